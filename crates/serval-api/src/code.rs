//! `GET /_serval/code/<sha256-hex>.zip`: the code package as uploaded, where GetFunction's
//! `Code.Location` points.
//!
//! Streams the zip from the store's data directory; the name is checked to be exactly 64
//! lowercase hex digits plus `.zip`, so no other file can be reached through this route.
//!
//! Not for: authorization (the control plane has none yet; the URL is not a presigned one).

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue};

use crate::error::{ApiError, ErrorCode};
use crate::functions::PathParam;
use crate::ApiState;

/// The hex digest in `<hex>.zip`, if the file name is exactly that.
fn digest_of(file: &str) -> Option<&str> {
    let hex = file.strip_suffix(".zip")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// `GET /_serval/code/{file}`.
pub async fn download(
    State(state): State<ApiState>,
    PathParam(file): PathParam,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::new(
            ErrorCode::ResourceNotFound,
            format!("Code package not found: {file}"),
        )
    };
    let hex = digest_of(&file).ok_or_else(not_found)?;
    let path = state.store.code_zip_path(hex);
    let f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => {
            return Err(ApiError::service(
                format!("failed to open code package {}", path.display()),
                e,
            ))
        }
    };
    let len = f
        .metadata()
        .await
        .map_err(|e| {
            ApiError::service(format!("failed to stat code package {}", path.display()), e)
        })?
        .len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(f));
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_hex_digest_names() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(digest_of(&format!("{hex}.zip")), Some(hex));
        assert_eq!(digest_of(hex), None);
        assert_eq!(digest_of("../serval.db.zip"), None);
        assert_eq!(digest_of(&format!("{}.zip", hex.to_uppercase())), None);
    }
}
