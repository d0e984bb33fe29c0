# Serval's Python runtime entry point; the runtime itself is serval_runtime.py beside this file,
# imported (not run as a script) so that its compiled bytecode is cached.
import serval_runtime

serval_runtime.main()
