//! Function URL configurations (`function_urls`): one per function and qualifier, each with
//! a server-unique URL id.
