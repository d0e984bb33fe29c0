//! AWS Lambda's quotas, as documented, in one place.

/// Smallest and largest `MemorySize`, in MB.
pub const MEMORY_MB_MIN: u32 = 128;
pub const MEMORY_MB_MAX: u32 = 10_240;
/// Default `MemorySize` when CreateFunction omits it.
pub const MEMORY_MB_DEFAULT: u32 = 128;
/// `Timeout` range and default, in seconds.
pub const TIMEOUT_SECS_MIN: u32 = 1;
pub const TIMEOUT_SECS_MAX: u32 = 900;
pub const TIMEOUT_SECS_DEFAULT: u32 = 3;
/// `EphemeralStorage.Size` range and default, in MB.
pub const EPHEMERAL_MB_MIN: u32 = 512;
pub const EPHEMERAL_MB_MAX: u32 = 10_240;
pub const EPHEMERAL_MB_DEFAULT: u32 = 512;
/// Total size of all environment variable keys and values, in bytes.
pub const ENVIRONMENT_MAX_BYTES: usize = 4 * 1024;
/// Longest function name (the name part, not the ARN).
pub const FUNCTION_NAME_MAX_LEN: usize = 64;
/// Longest `Description`.
pub const DESCRIPTION_MAX_LEN: usize = 256;
/// Longest `Handler`.
pub const HANDLER_MAX_LEN: usize = 128;
/// Largest zipped deployment package uploaded directly in the request (`ZipFile`).
pub const ZIPPED_CODE_MAX_BYTES: u64 = 50 * 1024 * 1024;
/// Largest unzipped deployment package.
pub const UNZIPPED_CODE_MAX_BYTES: u64 = 250 * 1024 * 1024;
/// Largest synchronous request and response payload.
pub const SYNC_PAYLOAD_MAX_BYTES: usize = 6 * 1024 * 1024;
/// How much of the end of an invocation's log `LogType: Tail` returns.
pub const LOG_TAIL_MAX_BYTES: usize = 4 * 1024;
/// Most functions ListFunctions returns in one page.
pub const LIST_MAX_ITEMS: usize = 50;
/// Default account concurrency limit reported by GetAccountSettings.
pub const ACCOUNT_CONCURRENCY_DEFAULT: u32 = 1000;
/// Most tags on one function.
pub const TAGS_MAX: usize = 50;
/// Largest asynchronous (`Event`) invocation payload: 1 MB since AWS raised it from 256 KB.
pub const ASYNC_PAYLOAD_MAX_BYTES: usize = 1024 * 1024;
/// `MaximumRetryAttempts` of an event-invoke config: range and AWS's default.
pub const RETRY_ATTEMPTS_MAX: u32 = 2;
pub const RETRY_ATTEMPTS_DEFAULT: u32 = 2;
/// `MaximumEventAgeInSeconds` of an event-invoke config: range and AWS's default (6 hours).
pub const EVENT_AGE_SECS_MIN: u32 = 60;
pub const EVENT_AGE_SECS_MAX: u32 = 21_600;
pub const EVENT_AGE_SECS_DEFAULT: u32 = 21_600;
/// Concurrency AWS keeps unreserved for functions without a reservation
/// (`UnreservedConcurrentExecutions` may not go below this through PutFunctionConcurrency).
pub const UNRESERVED_CONCURRENCY_MIN: u32 = 100;
/// Longest alias name.
pub const ALIAS_NAME_MAX_LEN: usize = 128;
/// Most versions an alias routes between (its own plus one in `AdditionalVersionWeights`).
pub const ALIAS_ADDITIONAL_VERSIONS_MAX: usize = 1;
