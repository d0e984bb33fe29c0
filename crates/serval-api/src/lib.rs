//! serval-api
