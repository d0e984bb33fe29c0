//! The store's error types: `StoreError` for metadata and logs, `CodeError` for code packages.
//!
//! For: telling a caller what went wrong with enough context (function name, path, hash) to
//! act on it, and which AWS error the API should render. Not for: rendering HTTP responses —
//! the API crate owns that; `aws_error_type` only names the AWS error a variant corresponds to.

use std::path::PathBuf;

/// A failure of a metadata or log operation.
///
/// Client mistakes (`AlreadyExists`, `NotFound`, `RevisionMismatch`, `InvalidMarker`, ...)
/// are distinct variants so the API can map them to AWS errors; `Database`, `Io` and
/// `Corrupt` are platform failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// CreateFunction on a name that exists (`ResourceConflictException`).
    #[error("function already exist: {name}")]
    AlreadyExists { name: String },
    /// The function does not exist (`ResourceNotFoundException`).
    #[error("function not found: {name}")]
    NotFound { name: String },
    /// The caller's `RevisionId` is not the stored one (`PreconditionFailedException`).
    #[error("the revision id provided does not match the latest revision id of {name}")]
    RevisionMismatch {
        name: String,
        expected: String,
        actual: String,
    },
    /// A ListFunctions `Marker` this store did not hand out (`InvalidParameterValueException`).
    #[error("invalid marker: {marker}")]
    InvalidMarker { marker: String },
    /// The log group does not exist (CloudWatch `ResourceNotFoundException`).
    #[error("The specified log group does not exist.")]
    LogGroupNotFound { group: String },
    /// The log stream does not exist (CloudWatch `ResourceNotFoundException`).
    #[error("The specified log stream does not exist.")]
    LogStreamNotFound { group: String, stream: String },
    /// A CloudWatch Logs `nextToken` this store did not hand out (`InvalidParameterException`).
    #[error("The specified nextToken is invalid.")]
    InvalidToken { token: String },
    /// A filter pattern Serval cannot parse or does not support (`InvalidParameterException`).
    #[error("Invalid filter pattern: {pattern}")]
    InvalidFilterPattern { pattern: String },
    /// A combination of log query parameters AWS also rejects (`InvalidParameterException`).
    #[error("{message}")]
    InvalidParameter { message: String },
    /// The database was written by a newer Serval.
    #[error("metadata database {path} has schema version {found}, this serval supports up to {supported}")]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// SQLite failed.
    #[error("metadata database failed during {operation}")]
    Database {
        operation: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// A filesystem operation on the data directory failed.
    #[error("failed to {operation} {path}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A stored record could not be decoded.
    #[error("stored record {what} is corrupt")]
    Corrupt {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    pub(crate) fn db(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |source| StoreError::Database { operation, source }
    }

    /// The AWS error type (`x-amzn-ErrorType`) this error corresponds to.
    pub fn aws_error_type(&self) -> &'static str {
        match self {
            StoreError::AlreadyExists { .. } => "ResourceConflictException",
            StoreError::NotFound { .. }
            | StoreError::LogGroupNotFound { .. }
            | StoreError::LogStreamNotFound { .. } => "ResourceNotFoundException",
            StoreError::RevisionMismatch { .. } => "PreconditionFailedException",
            StoreError::InvalidMarker { .. } => "InvalidParameterValueException",
            StoreError::InvalidToken { .. }
            | StoreError::InvalidFilterPattern { .. }
            | StoreError::InvalidParameter { .. } => "InvalidParameterException",
            StoreError::SchemaTooNew { .. }
            | StoreError::Database { .. }
            | StoreError::Io { .. }
            | StoreError::Corrupt { .. } => "ServiceException",
        }
    }

    /// Whether the caller caused this error (4xx) rather than the platform (5xx).
    pub fn is_client_error(&self) -> bool {
        self.aws_error_type() != "ServiceException"
    }
}

/// Why an uploaded code package was refused, or could not be stored.
///
/// Every variant except `Io` and `Database` is the uploader's fault; its message is written
/// for them and is sent as the AWS error `Message` unchanged.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// The zip itself is over the direct-upload limit (`RequestEntityTooLargeException`).
    #[error("Zipped size must be smaller than {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    /// The declared or actual unzipped size is over the limit (`InvalidParameterValueException`).
    #[error("Unzipped size must be smaller than {limit} bytes")]
    UnzippedTooLarge {
        limit: u64,
        /// Whether the sizes in the zip's headers already said so (else found while unpacking).
        declared: bool,
    },
    /// Not a zip, a corrupt zip, an encrypted or unsupported one, or conflicting entries.
    #[error("Could not unzip uploaded file. Please check your file, then try to upload again.")]
    InvalidZip {
        #[source]
        source: zip::result::ZipError,
    },
    /// An entry's name is absolute, has a drive prefix or a `..` component.
    #[error("Could not unzip uploaded file: entry '{entry}' points outside the package. Please check your file, then try to upload again.")]
    PathTraversal { entry: String },
    /// A symlink entry whose target is absolute, resolves outside the package, or passes
    /// through another symlink.
    #[error("Could not unzip uploaded file: symbolic link '{entry}' points outside the package. Please check your file, then try to upload again.")]
    SymlinkEscape { entry: String, target: String },
    /// An entry expands by an absurd ratio (a zip bomb).
    #[error("Could not unzip uploaded file: entry '{entry}' has a suspicious compression ratio. Please check your file, then try to upload again.")]
    ZipBomb {
        entry: String,
        compressed: u64,
        uncompressed: u64,
    },
    /// More entries than Serval unpacks.
    #[error("Could not unzip uploaded file: it has {entries} entries, more than the {limit} allowed. Please check your file, then try to upload again.")]
    TooManyEntries { entries: usize, limit: usize },
    /// Writing the package to the data directory failed (a platform failure).
    #[error("failed to {operation} {path} for code package {sha256_hex}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        sha256_hex: String,
        #[source]
        source: std::io::Error,
    },
    /// Recording the package in the metadata database failed (a platform failure).
    #[error("failed to record code package {sha256_hex}")]
    Database {
        sha256_hex: String,
        #[source]
        source: rusqlite::Error,
    },
}

impl CodeError {
    /// The AWS error type (`x-amzn-ErrorType`) this error corresponds to.
    pub fn aws_error_type(&self) -> &'static str {
        match self {
            CodeError::TooLarge { .. } => "RequestEntityTooLargeException",
            CodeError::Io { .. } | CodeError::Database { .. } => "ServiceException",
            _ => "InvalidParameterValueException",
        }
    }

    /// HTTP status AWS uses for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            CodeError::TooLarge { .. } => 413,
            CodeError::Io { .. } | CodeError::Database { .. } => 500,
            _ => 400,
        }
    }

    /// Whether the uploader caused this error rather than the platform.
    pub fn is_client_error(&self) -> bool {
        self.http_status() < 500
    }
}
