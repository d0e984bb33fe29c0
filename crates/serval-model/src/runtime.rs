//! The runtimes Serval can run, named as AWS names them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// A supported runtime identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Runtime {
    Python39,
    Python310,
    Python311,
    Python312,
    Python313,
    Nodejs18,
    Nodejs20,
    Nodejs22,
    Provided,
    ProvidedAl2,
    ProvidedAl2023,
}

/// How a runtime is started: which of Serval's bootstraps, or the package's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeFamily {
    /// Serval's Python bootstrap on the host's `python3`.
    Python,
    /// Serval's Node.js bootstrap on the host's `node`.
    Node,
    /// The package's own `bootstrap` executable.
    Provided,
}

impl Runtime {
    /// Every supported runtime, in AWS's spelling order.
    pub const ALL: [Runtime; 11] = [
        Runtime::Python39,
        Runtime::Python310,
        Runtime::Python311,
        Runtime::Python312,
        Runtime::Python313,
        Runtime::Nodejs18,
        Runtime::Nodejs20,
        Runtime::Nodejs22,
        Runtime::Provided,
        Runtime::ProvidedAl2,
        Runtime::ProvidedAl2023,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Python39 => "python3.9",
            Runtime::Python310 => "python3.10",
            Runtime::Python311 => "python3.11",
            Runtime::Python312 => "python3.12",
            Runtime::Python313 => "python3.13",
            Runtime::Nodejs18 => "nodejs18.x",
            Runtime::Nodejs20 => "nodejs20.x",
            Runtime::Nodejs22 => "nodejs22.x",
            Runtime::Provided => "provided",
            Runtime::ProvidedAl2 => "provided.al2",
            Runtime::ProvidedAl2023 => "provided.al2023",
        }
    }

    pub fn family(self) -> RuntimeFamily {
        match self {
            Runtime::Python39
            | Runtime::Python310
            | Runtime::Python311
            | Runtime::Python312
            | Runtime::Python313 => RuntimeFamily::Python,
            Runtime::Nodejs18 | Runtime::Nodejs20 | Runtime::Nodejs22 => RuntimeFamily::Node,
            Runtime::Provided | Runtime::ProvidedAl2 | Runtime::ProvidedAl2023 => {
                RuntimeFamily::Provided
            }
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Runtime {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Runtime::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let supported: Vec<&str> = Runtime::ALL.iter().map(|r| r.as_str()).collect();
                ValidationError::InvalidParameter(format!(
                    "Value {s} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [{}] or be a valid ARN",
                    supported.join(", ")
                ))
            })
    }
}

impl TryFrom<String> for Runtime {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Runtime> for String {
    fn from(r: Runtime) -> String {
        r.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_runtime_name() {
        for r in Runtime::ALL {
            assert_eq!(r.as_str().parse::<Runtime>().unwrap(), r);
        }
    }

    #[test]
    fn rejects_unknown_runtime_with_aws_wording() {
        let err = "cobol85".parse::<Runtime>().unwrap_err();
        assert!(err
            .to_string()
            .contains("Member must satisfy enum value set"));
        assert!("java21".parse::<Runtime>().is_err());
    }

    #[test]
    fn classifies_families() {
        assert_eq!(Runtime::Python313.family(), RuntimeFamily::Python);
        assert_eq!(Runtime::Nodejs22.family(), RuntimeFamily::Node);
        assert_eq!(Runtime::ProvidedAl2023.family(), RuntimeFamily::Provided);
    }
}
