//! The seccomp filter every environment runs under.
//!
//! A deny-list: every system call is allowed except those no Lambda function needs and that widen
//! what a compromised function can reach — mounting and the new mount API, namespaces (`unshare`,
//! `setns`, `clone` with a namespace flag), `ptrace`, kernel modules and `kexec`, `bpf`, the
//! kernel keyring, `io_uring`, `perf_event_open`, `userfaultfd`, file handles, setting the clock,
//! swap, quotas, accounting, `syslog`, `iopl`/`ioperm` and `reboot`. A refused call fails with
//! `EPERM`, so a program that probes for a feature sees "not permitted" instead of dying.
//! `clone3` fails with `ENOSYS` instead (as under Docker): its flags live in memory a filter cannot
//! read, and `ENOSYS` makes glibc fall back to `clone`, whose flags the filter does inspect.
//! System calls through another ABI (32-bit `int 0x80`, x32) fail with `EPERM`, so the list
//! cannot be bypassed through their different numbering.
//!
//! The program is compiled once at start-up with `seccompiler`, behind a short prefix of our own
//! (the architecture and x32 checks, `clone3`); [`SeccompFilter::install`] is then cheap and
//! async-signal-safe, for the forked child right before it executes the runtime.
//!
//! Not for: privilege dropping, capabilities or `no_new_privs` (the sandbox's child sets
//! those up), nor anything a missing capability already refuses: `chroot`, `adjtimex`,
//! `personality` and `process_vm_readv`/`process_vm_writev` stay allowed because functions and
//! common tools use them and the kernel's own checks make them harmless here.

use std::collections::BTreeMap;
use std::fmt;

use seccompiler::{
    BackendError, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule,
    TargetArch,
};

/// Why the filter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// `seccompiler` refused the rules.
    #[error("failed to compile the seccomp filter")]
    Compile {
        #[source]
        source: BackendError,
    },
    /// The program is longer than the kernel accepts.
    #[error("seccomp filter has {instructions} instructions, more than the kernel accepts")]
    TooLong { instructions: usize },
    /// The filter's syscall list exists for x86_64 only.
    #[error("no seccomp filter for architecture {arch}")]
    UnsupportedArch { arch: &'static str },
}

/// A compiled filter, built once at start-up and installed in every environment's process.
///
/// Owns its BPF program; cheap to share (`Send + Sync`, read-only after [`SeccompFilter::build`]).
pub struct SeccompFilter {
    program: Box<[libc::sock_filter]>,
    /// `program.len()`, checked at build time to fit a `sock_fprog`.
    len: u16,
}

impl fmt::Debug for SeccompFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeccompFilter")
            .field("instructions", &self.len)
            .finish()
    }
}

/// `AUDIT_ARCH_X86_64` from `<linux/audit.h>`: `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// The bit that marks a system call number of the x32 ABI (`__X32_SYSCALL_BIT`).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Offsets in `struct seccomp_data`.
const SECCOMP_DATA_NR_OFFSET: u32 = 0;
const SECCOMP_DATA_ARCH_OFFSET: u32 = 4;

/// The namespace flags that make `clone` refused (one rule per flag).
const CLONE_NAMESPACE_FLAGS: [libc::c_int; 8] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
    // Shares its bit with CSIGNAL in `clone`'s flags, where it only matches exit signals above
    // 127 (none exist); listed so the rule stays right if the kernel ever honours it there.
    libc::CLONE_NEWTIME,
];

/// System calls refused outright with `EPERM`.
#[cfg(target_arch = "x86_64")]
const REFUSED_SYSCALLS: &[libc::c_long] = &[
    // Mounts and the new mount API.
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    // Namespaces (`clone` is filtered by its flags).
    libc::SYS_unshare,
    libc::SYS_setns,
    // Other processes and the kernel.
    libc::SYS_ptrace,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_lookup_dcookie,
    libc::SYS_syslog,
    libc::SYS_reboot,
    // The kernel keyring.
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    // io_uring: a second way into the kernel that seccomp does not see.
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    // File handles bypass path lookups.
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    // Host-wide state.
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_quotactl,
    libc::SYS_acct,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_iopl,
    libc::SYS_ioperm,
];

impl SeccompFilter {
    /// Builds the BPF program for the host architecture (x86_64 only).
    pub fn build() -> Result<SeccompFilter, SeccompError> {
        #[cfg(target_arch = "x86_64")]
        {
            Self::build_x86_64()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Err(SeccompError::UnsupportedArch {
                arch: std::env::consts::ARCH,
            })
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn build_x86_64() -> Result<SeccompFilter, SeccompError> {
        let compile = |source| SeccompError::Compile { source };

        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = REFUSED_SYSCALLS
            .iter()
            .map(|&nr| (nr, Vec::new()))
            .collect();
        let clone_rules = CLONE_NAMESPACE_FLAGS
            .iter()
            .map(|&flag| {
                // `clone` takes its flags in arg0 on x86_64; the kernel reads their low 32 bits.
                let flag = u64::from(flag as u32);
                let condition = SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::MaskedEq(flag),
                    flag,
                )?;
                SeccompRule::new(vec![condition])
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(compile)?;
        rules.insert(libc::SYS_clone, clone_rules);

        let filter = seccompiler::SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            TargetArch::x86_64,
        )
        .map_err(compile)?;
        let compiled: seccompiler::BpfProgram = filter.try_into().map_err(compile)?;

        let errno = |e: libc::c_int| libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA);
        // Our prefix; BPF jumps are relative, so seccompiler's program runs unchanged after it.
        let mut program = vec![
            // Another ABI (i386 through `int 0x80`): refuse instead of seccompiler's kill.
            bpf_stmt(
                libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
                SECCOMP_DATA_ARCH_OFFSET,
            ),
            bpf_jump(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                AUDIT_ARCH_X86_64,
                1,
                0,
            ),
            bpf_stmt(libc::BPF_RET | libc::BPF_K, errno(libc::EPERM)),
            // x32 shares the x86_64 audit arch; its numbers carry the x32 bit.
            bpf_stmt(
                libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
                SECCOMP_DATA_NR_OFFSET,
            ),
            bpf_jump(
                libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
                X32_SYSCALL_BIT,
                0,
                1,
            ),
            bpf_stmt(libc::BPF_RET | libc::BPF_K, errno(libc::EPERM)),
            // clone3: its flags are out of the filter's reach; ENOSYS makes glibc use clone.
            bpf_jump(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                libc::SYS_clone3 as u32,
                0,
                1,
            ),
            bpf_stmt(libc::BPF_RET | libc::BPF_K, errno(libc::ENOSYS)),
        ];
        program.extend(compiled.into_iter().map(|insn| libc::sock_filter {
            code: insn.code,
            jt: insn.jt,
            jf: insn.jf,
            k: insn.k,
        }));

        let instructions = program.len();
        let len = u16::try_from(instructions)
            .ok()
            .filter(|&len| i32::from(len) <= libc::BPF_MAXINSNS)
            .ok_or(SeccompError::TooLong { instructions })?;
        Ok(SeccompFilter {
            program: program.into_boxed_slice(),
            len,
        })
    }

    /// Installs the filter in the calling thread with `seccomp(SECCOMP_SET_MODE_FILTER)`; children
    /// and the program it executes inherit it.
    ///
    /// Async-signal-safe: no allocation, no lock, one system call, so it may run in the child of
    /// a `fork` of a multi-threaded process. Requires `no_new_privs` to be set already (or
    /// `CAP_SYS_ADMIN`). Returns the `errno` on failure.
    pub fn install(&self) -> Result<(), i32> {
        let prog = libc::sock_fprog {
            len: self.len,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `self.program`, `len` instructions long, which outlives the
        // call; the kernel only reads (and copies) it. No other memory is touched.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0 as libc::c_uint,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL))
        }
    }
}

fn bpf_stmt(code: u32, k: u32) -> libc::sock_filter {
    bpf_jump(code, k, 0, 0)
}

fn bpf_jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        // BPF opcodes are 16 bits wide; libc declares their parts as u32.
        code: code as u16,
        jt,
        jf,
        k,
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// How a forked child ended.
    #[derive(Debug, PartialEq, Eq)]
    enum ChildEnd {
        Exited(i32),
        Signaled(i32),
    }

    /// Forks; the child runs `check` (system calls only: no allocation, no locks) and exits with
    /// the code it returns. The parent waits and reports how the child ended.
    fn in_child(check: impl FnOnce() -> i32) -> ChildEnd {
        // SAFETY: the child only makes system calls through `check` and then `_exit`s; it never
        // returns into the test harness nor touches locks another thread may hold.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = check();
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child; `status` is a valid out pointer.
            let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
            if rc == pid {
                break;
            }
            assert_eq!(errno(), libc::EINTR, "waitpid failed");
        }
        if libc::WIFEXITED(status) {
            ChildEnd::Exited(libc::WEXITSTATUS(status))
        } else {
            ChildEnd::Signaled(libc::WTERMSIG(status))
        }
    }

    /// Sets `no_new_privs` and installs the filter; 0 on success, else `code`.
    fn restrict(filter: &SeccompFilter, code: i32) -> i32 {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return code;
        }
        if filter.install().is_err() {
            return code + 1;
        }
        0
    }

    /// Whether a system call's result is a failure with `want`.
    fn refused(rc: libc::c_long, want: i32) -> bool {
        rc == -1 && errno() == want
    }

    const CHECKS: &[&str] = &[
        "ok",
        "prctl(PR_SET_NO_NEW_PRIVS) failed",
        "install failed",
        "mount was not refused with EPERM",
        "unshare(CLONE_NEWUSER) was not refused with EPERM",
        "unshare(CLONE_NEWNET) was not refused with EPERM",
        "clone(CLONE_NEWPID) was not refused with EPERM",
        "clone3 did not fail with ENOSYS",
        "an x32 system call was not refused with EPERM",
        "ptrace(PTRACE_TRACEME) was not refused with EPERM",
        "io_uring_setup was not refused with EPERM",
        "a plain fork (clone without namespace flags) failed",
        "the forked grandchild did not exit cleanly",
        "getpid failed",
    ];

    /// The child's side of `refuses_what_functions_do_not_need`: the index in [`CHECKS`] of the
    /// first check that failed, 0 if all passed.
    fn check_filter_in_child(filter: &SeccompFilter) -> i32 {
        let rc = restrict(filter, 1);
        if rc != 0 {
            return rc;
        }
        // SAFETY (every call below): raw system calls with integer or C-string arguments, or
        // null pointers where the kernel would only fault; nothing here touches Rust-owned memory.
        unsafe {
            // A target that does not exist: if the filter let it through, nothing gets mounted.
            let rc = libc::mount(
                c"none".as_ptr(),
                c"/nonexistent/serval-seccomp-test".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            );
            if !refused(rc.into(), libc::EPERM) {
                return 3;
            }
            if !refused(libc::unshare(libc::CLONE_NEWUSER).into(), libc::EPERM) {
                return 4;
            }
            if !refused(libc::unshare(libc::CLONE_NEWNET).into(), libc::EPERM) {
                return 5;
            }
            let flags = (libc::CLONE_NEWPID | libc::SIGCHLD) as libc::c_long;
            let rc = libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0);
            if rc == 0 {
                libc::_exit(0);
            }
            if !refused(rc, libc::EPERM) {
                return 6;
            }
            if !refused(
                libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0),
                libc::ENOSYS,
            ) {
                return 7;
            }
            let x32_getpid = libc::SYS_getpid | libc::c_long::from(X32_SYSCALL_BIT);
            if !refused(libc::syscall(x32_getpid), libc::EPERM) {
                return 8;
            }
            let rc = libc::ptrace(
                libc::PTRACE_TRACEME,
                0,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            );
            if !refused(rc, libc::EPERM) {
                return 9;
            }
            let rc = libc::syscall(libc::SYS_io_uring_setup, 1, std::ptr::null_mut::<u8>());
            if !refused(rc, libc::EPERM) {
                return 10;
            }
            // A plain fork, as glibc does it: clone with only the exit signal.
            let rc = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0);
            if rc == 0 {
                libc::_exit(0);
            }
            if rc < 0 {
                return 11;
            }
            let mut status = 0;
            if libc::waitpid(rc as libc::pid_t, &mut status, 0) != rc as libc::pid_t
                || !libc::WIFEXITED(status)
                || libc::WEXITSTATUS(status) != 0
            {
                return 12;
            }
            if libc::getpid() <= 0 || libc::syscall(libc::SYS_getpid) != libc::getpid().into() {
                return 13;
            }
        }
        0
    }

    fn running_as_root() -> bool {
        // SAFETY: geteuid has no arguments and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn builds_filter_within_kernel_limit() {
        let filter = SeccompFilter::build().expect("build the filter");
        assert!(!filter.program.is_empty());
        assert!(filter.program.len() <= libc::BPF_MAXINSNS as usize);
        assert_eq!(usize::from(filter.len), filter.program.len());
    }

    #[test]
    fn filter_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SeccompFilter>();
    }

    #[test]
    fn refuses_what_functions_do_not_need() {
        // Without root the unfiltered calls would fail with EPERM anyway and prove nothing.
        if !running_as_root() {
            eprintln!("skipping: needs root so that refusals come from the filter");
            return;
        }
        let filter = SeccompFilter::build().expect("build the filter");
        match in_child(|| check_filter_in_child(&filter)) {
            ChildEnd::Exited(0) => {}
            ChildEnd::Exited(code) => panic!(
                "{}",
                CHECKS
                    .get(code as usize)
                    .copied()
                    .unwrap_or("child exited with an unknown code")
            ),
            ChildEnd::Signaled(signal) => panic!("child was killed by signal {signal}"),
        }
    }

    #[test]
    fn refuses_32_bit_system_calls() {
        let filter = SeccompFilter::build().expect("build the filter");
        // Does this kernel run i386 system calls at all? Without emulation `int 0x80` faults.
        let probe = in_child(|| {
            let _ = i386_getpid();
            0
        });
        if probe != ChildEnd::Exited(0) {
            eprintln!("skipping: this kernel has no i386 system calls ({probe:?})");
            return;
        }
        let end = in_child(|| {
            let rc = restrict(&filter, 1);
            if rc != 0 {
                return rc;
            }
            if i386_getpid() == -libc::EPERM {
                0
            } else {
                3
            }
        });
        assert_eq!(
            end,
            ChildEnd::Exited(0),
            "i386 getpid was not refused with EPERM"
        );
    }

    /// getpid through the i386 ABI (`int 0x80`, number 20); the raw return value (`-errno` on
    /// failure).
    fn i386_getpid() -> i32 {
        let mut eax: i32 = 20;
        // SAFETY: `int 0x80` with getpid's number takes no arguments and returns in eax; the
        // registers the kernel may clear on this path are declared clobbered.
        unsafe {
            std::arch::asm!(
                "int 0x80",
                inout("eax") eax,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            );
        }
        eax
    }
}
