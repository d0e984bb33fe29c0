//! The `Handler` setting and how each runtime family splits it into module and function.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::HANDLER_MAX_LEN;
use crate::{RuntimeFamily, ValidationError};

/// A handler string as configured (`app.handler`, `src/app.handler`, anything for `provided`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Handler(String);

/// Why a handler string cannot name a function in a given runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    #[error("Bad handler '{0}': not enough values to unpack (expected 2, got 1)")]
    MissingFunction(String),
    #[error("Bad handler '{0}': empty module or function name")]
    Empty(String),
    #[error("Bad handler '{0}': module path may not leave the task root")]
    EscapesTaskRoot(String),
}

impl Handler {
    /// Validates AWS's constraint: 1 to 128 characters, none of them white space.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if s.len() > HANDLER_MAX_LEN || s.chars().any(char::is_whitespace) || s.is_empty() {
            return Err(ValidationError::Constraint {
                field: "handler",
                value: s.to_owned(),
                constraint: format!(
                    "Member must satisfy regular expression pattern: [^\\s]+ and have length less than or equal to {HANDLER_MAX_LEN}"
                ),
            });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Splits the handler into (module, function) for a runtime family; `Provided` accepts
    /// anything and returns the whole string as the "function".
    ///
    /// Python: `pkg/sub/app.handler` → module `pkg.sub.app`, function `handler`.
    /// Node.js: `src/app.handler` → module `src/app`, function path `handler` (dots after the
    /// module name walk nested properties, `app.obj.fn` → `obj.fn`).
    pub fn split(&self, family: RuntimeFamily) -> Result<(String, String), HandlerError> {
        let h = &self.0;
        match family {
            RuntimeFamily::Provided => Ok((String::new(), h.clone())),
            RuntimeFamily::Python => {
                let (module, function) = h
                    .rsplit_once('.')
                    .ok_or_else(|| HandlerError::MissingFunction(h.clone()))?;
                check_module_path(h, module)?;
                if function.is_empty() {
                    return Err(HandlerError::Empty(h.clone()));
                }
                Ok((module.replace('/', "."), function.to_owned()))
            }
            RuntimeFamily::Node => {
                let slash = h.rfind('/').map_or(0, |i| i + 1);
                let dot = h[slash..]
                    .find('.')
                    .ok_or_else(|| HandlerError::MissingFunction(h.clone()))?
                    + slash;
                let (module, function) = (&h[..dot], &h[dot + 1..]);
                check_module_path(h, module)?;
                if function.is_empty() || function.split('.').any(str::is_empty) {
                    return Err(HandlerError::Empty(h.clone()));
                }
                Ok((module.to_owned(), function.to_owned()))
            }
        }
    }
}

/// Rejects only what no runtime could load (an empty module) and module paths that leave the
/// task root (absolute, or through `..`); `./app` and the like are the runtime's business.
fn check_module_path(handler: &str, module: &str) -> Result<(), HandlerError> {
    if module.is_empty() || module.ends_with('/') {
        return Err(HandlerError::Empty(handler.to_owned()));
    }
    if module.starts_with('/') || module.split('/').any(|seg| seg == "..") {
        return Err(HandlerError::EscapesTaskRoot(handler.to_owned()));
    }
    Ok(())
}

impl fmt::Display for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Handler {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Handler> for String {
    fn from(h: Handler) -> String {
        h.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(h: &str, f: RuntimeFamily) -> Result<(String, String), HandlerError> {
        Handler::parse(h).unwrap().split(f)
    }

    #[test]
    fn splits_python_handlers_with_packages_and_folders() {
        assert_eq!(
            split("app.handler", RuntimeFamily::Python).unwrap(),
            ("app".into(), "handler".into())
        );
        assert_eq!(
            split("pkg.mod.fn", RuntimeFamily::Python).unwrap(),
            ("pkg.mod".into(), "fn".into())
        );
        assert_eq!(
            split("src/sub/app.fn", RuntimeFamily::Python).unwrap(),
            ("src.sub.app".into(), "fn".into())
        );
    }

    #[test]
    fn splits_node_handlers_with_folders_and_nested_properties() {
        assert_eq!(
            split("index.handler", RuntimeFamily::Node).unwrap(),
            ("index".into(), "handler".into())
        );
        assert_eq!(
            split("src/app.handler", RuntimeFamily::Node).unwrap(),
            ("src/app".into(), "handler".into())
        );
        assert_eq!(
            split("lib.v1/app.obj.fn", RuntimeFamily::Node).unwrap(),
            ("lib.v1/app".into(), "obj.fn".into())
        );
    }

    #[test]
    fn rejects_handlers_without_function_or_leaving_task_root() {
        assert!(matches!(
            split("app", RuntimeFamily::Python),
            Err(HandlerError::MissingFunction(_))
        ));
        assert!(matches!(
            split("app.", RuntimeFamily::Python),
            Err(HandlerError::Empty(_))
        ));
        assert!(matches!(
            split("../x.fn", RuntimeFamily::Node),
            Err(HandlerError::EscapesTaskRoot(_))
        ));
        assert!(matches!(
            split("/etc/x.fn", RuntimeFamily::Python),
            Err(HandlerError::Empty(_) | HandlerError::EscapesTaskRoot(_))
        ));
        assert_eq!(split("x", RuntimeFamily::Provided).unwrap().1, "x");
    }

    #[test]
    fn validates_length_and_whitespace() {
        assert!(Handler::parse("a b.c").is_err());
        assert!(Handler::parse("").is_err());
        assert!(Handler::parse(&"a".repeat(129)).is_err());
        assert!(Handler::parse("bootstrap").is_ok());
    }
}
