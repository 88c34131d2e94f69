//! The public error codes. One table maps each code to its HTTP status so every transport and
//! handler answers the same way: `{"error": {"code", "message", "details"}}`.

use serde::Serialize;
use serde_json::Value;

/// Declares [`ErrorCode`] from one table, so its wire names (serde) and [`ErrorCode::as_str`]
/// cannot drift apart.
macro_rules! codes {
    ($($variant:ident => $name:literal),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        pub enum ErrorCode {
            $(#[serde(rename = $name)] $variant),*
        }

        impl ErrorCode {
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name),* }
            }
        }
    };
}

codes! {
    MalformedBody => "malformed_body",
    InvalidRequest => "invalid_request",
    NotAuthenticated => "not_authenticated",
    InvalidCredentials => "invalid_credentials",
    Forbidden => "forbidden",
    NotFound => "not_found",
    MethodNotAllowed => "method_not_allowed",
    Conflict => "conflict",
    VersionMismatch => "version_mismatch",
    PayloadTooLarge => "payload_too_large",
    RequestTimeout => "request_timeout",
    ValidationFailed => "validation_failed",
    DependencyCycle => "dependency_cycle",
    RateLimited => "rate_limited",
    UnsupportedMediaType => "unsupported_media_type",
    Internal => "internal",
    Unavailable => "unavailable",
    StoreUnavailable => "store_unavailable",
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::MalformedBody | ErrorCode::InvalidRequest => 400,
            ErrorCode::NotAuthenticated | ErrorCode::InvalidCredentials => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::VersionMismatch => 412,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::ValidationFailed | ErrorCode::DependencyCycle => 422,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable | ErrorCode::StoreUnavailable => 503,
        }
    }
}

/// An error meant for a client: a code, a plain message, and optional details. It never carries
/// SQL, stack traces or internal error text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Forbidden, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::ValidationFailed, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Conflict, message)
    }

    pub fn internal() -> Self {
        ApiError::new(ErrorCode::Internal, "internal error")
    }

    /// The database cannot be reached: the request may succeed once it is back.
    pub fn store_unavailable() -> Self {
        ApiError::new(
            ErrorCode::StoreUnavailable,
            "the database is unavailable; try again later",
        )
    }

    /// The JSON body: `{"error": {"code", "message", "details"}}`.
    pub fn body(&self) -> Value {
        let mut error = serde_json::json!({
            "code": self.code.as_str(),
            "message": self.message,
        });
        if let Some(details) = &self.details {
            error["details"] = details.clone();
        }
        serde_json::json!({ "error": error })
    }
}
