//! `?limit=` (1–100, default 20) and `?cursor=`.

use serde::Deserialize;

use super::errors::ApiError;
use crate::store::Cursor;

/// The paging part of a list query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 100; 20 when absent.
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_]{1,64}$")]
    pub cursor: Option<String>,
}

impl PageQuery {
    /// # Errors
    /// 400 naming `limit` or `cursor`.
    pub fn parse(&self) -> Result<(u64, Option<Cursor>), ApiError> {
        let limit = match &self.limit {
            None => 20,
            Some(s) => match s.parse::<u64>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => return Err(ApiError::field("limit", "must be a whole number from 1 to 100")),
            },
        };
        let cursor =
            self.cursor.as_deref().map(Cursor::decode).transpose().map_err(|m| ApiError::field("cursor", m))?;
        Ok((limit, cursor))
    }
}

/// Parses a query string into `T`, naming the parameter on error.
///
/// # Errors
/// 400 validation problem.
pub fn query<T: serde::de::DeserializeOwned>(req: &actix_web::HttpRequest) -> Result<T, ApiError> {
    actix_web::web::Query::<T>::from_query(req.query_string())
        .map(actix_web::web::Query::into_inner)
        .map_err(|e| ApiError::field("query", e.to_string()))
}
