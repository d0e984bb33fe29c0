//! serval-sandbox
