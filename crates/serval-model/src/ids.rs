//! Validated identifiers: function names, qualifiers, function references (name, ARN or partial
//! ARN, with an optional qualifier), request and environment ids.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::limits::FUNCTION_NAME_MAX_LEN;
use crate::ValidationError;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// A function's name: 1 to 64 characters of `[a-zA-Z0-9-_]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FunctionName(String);

impl FunctionName {
    /// Validates a bare function name.
    pub fn parse(name: &str) -> Result<Self, ValidationError> {
        if name.is_empty() || name.len() > FUNCTION_NAME_MAX_LEN || !name.chars().all(is_name_char)
        {
            return Err(ValidationError::Constraint {
                field: "functionName",
                value: name.to_owned(),
                constraint: format!(
                    "Member must satisfy regular expression pattern: [a-zA-Z0-9-_]+ and have length between 1 and {FUNCTION_NAME_MAX_LEN}"
                ),
            });
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The unqualified ARN of this function.
    pub fn arn(&self, region: &str) -> String {
        format!(
            "arn:aws:lambda:{region}:{}:function:{}",
            crate::ACCOUNT_ID,
            self.0
        )
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for FunctionName {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<FunctionName> for String {
    fn from(n: FunctionName) -> String {
        n.0
    }
}

/// What follows the colon in `name:qualifier`: `$LATEST`, a version number or an alias name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Qualifier {
    Latest,
    Version(u64),
    Alias(String),
}

impl Qualifier {
    /// Validates a qualifier (1 to 128 characters of `[a-zA-Z0-9$_-]`).
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if s.is_empty()
            || s.len() > 128
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '$' || c == '_' || c == '-')
        {
            return Err(ValidationError::Constraint {
                field: "qualifier",
                value: s.to_owned(),
                constraint: "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)"
                    .into(),
            });
        }
        if s == "$LATEST" {
            return Ok(Qualifier::Latest);
        }
        if s.chars().all(|c| c.is_ascii_digit()) {
            return s.parse().map(Qualifier::Version).map_err(|_| {
                ValidationError::InvalidParameter(format!("Invalid version number: {s}"))
            });
        }
        if s.contains('$') {
            return Err(ValidationError::InvalidParameter(format!(
                "Invalid qualifier: {s}"
            )));
        }
        Ok(Qualifier::Alias(s.to_owned()))
    }
}

impl fmt::Display for Qualifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Qualifier::Latest => f.write_str("$LATEST"),
            Qualifier::Version(v) => write!(f, "{v}"),
            Qualifier::Alias(a) => f.write_str(a),
        }
    }
}

/// A reference to a function as the API accepts it: `my-function`, `my-function:v1`,
/// `123456789012:function:my-function`, or a full ARN, each with an optional qualifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: FunctionName,
    pub qualifier: Option<Qualifier>,
}

impl FunctionRef {
    /// Parses the `FunctionName` path parameter of the Lambda API.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let invalid = || {
            ValidationError::Constraint {
            field: "functionName",
            value: s.to_owned(),
            constraint: "Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?".into(),
        }
        };
        if s.is_empty() || s.len() > 256 {
            return Err(invalid());
        }
        let parts: Vec<&str> = s.split(':').collect();
        // Strip the optional prefixes: arn:aws:lambda:REGION:ACCOUNT:function:NAME[:Q],
        // ACCOUNT:function:NAME[:Q], NAME[:Q].
        let rest: &[&str] = if parts[0] == "arn" {
            if parts.len() < 7
                || !parts[1].starts_with("aws")
                || parts[2] != "lambda"
                || parts[5] != "function"
            {
                return Err(invalid());
            }
            &parts[6..]
        } else if parts.len() >= 3 && parts[1] == "function" {
            if parts[0].len() != 12 || !parts[0].chars().all(|c| c.is_ascii_digit()) {
                return Err(invalid());
            }
            &parts[2..]
        } else {
            &parts[..]
        };
        let (name, qualifier) = match rest {
            [name] => (*name, None),
            [name, q] => (*name, Some(Qualifier::parse(q)?)),
            _ => return Err(invalid()),
        };
        Ok(FunctionRef {
            name: FunctionName::parse(name)?,
            qualifier,
        })
    }
}

/// The id of one invocation, a UUID as AWS uses, shown in logs and headers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
    /// A request id handed out before and read back from Serval's own store (an
    /// asynchronous event keeps its id across retries and restarts).
    pub fn from_stored(id: String) -> Self {
        Self(id)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of one execution environment, unique within a server process (`env-7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvironmentId(u64);

impl EnvironmentId {
    /// A fresh id, never handed out before by this process.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for EnvironmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "env-{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_and_rejects_bad_characters_or_length() {
        assert!(FunctionName::parse("my-function_1").is_ok());
        assert!(FunctionName::parse("").is_err());
        assert!(FunctionName::parse("has space").is_err());
        assert!(FunctionName::parse("dot.name").is_err());
        assert!(FunctionName::parse(&"a".repeat(64)).is_ok());
        assert!(FunctionName::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn parses_every_function_reference_form() {
        let r = FunctionRef::parse("f").unwrap();
        assert_eq!((r.name.as_str(), r.qualifier), ("f", None));
        let r = FunctionRef::parse("f:$LATEST").unwrap();
        assert_eq!(r.qualifier, Some(Qualifier::Latest));
        let r = FunctionRef::parse("000000000000:function:f:7").unwrap();
        assert_eq!(
            (r.name.as_str(), r.qualifier),
            ("f", Some(Qualifier::Version(7)))
        );
        let r =
            FunctionRef::parse("arn:aws:lambda:us-east-1:000000000000:function:f:live").unwrap();
        assert_eq!(r.qualifier, Some(Qualifier::Alias("live".into())));
        let r = FunctionRef::parse("arn:aws:lambda:us-east-1:000000000000:function:f").unwrap();
        assert_eq!(r.name.as_str(), "f");
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in [
            "",
            "a:b:c",
            "arn:aws:s3:us-east-1:000000000000:function:f",
            "12:function:f",
            "f:$BAD",
            "f:",
            "../etc",
        ] {
            assert!(FunctionRef::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn environment_ids_are_unique() {
        let a = EnvironmentId::next();
        let b = EnvironmentId::next();
        assert_ne!(a, b);
        assert_eq!(format!("{}", EnvironmentId(7)), "env-7");
    }
}
