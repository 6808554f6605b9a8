//! `[track]`: where a study's results are logged besides its own directory — an MLflow tracking
//! server. Not part of any config hash: where results are copied does not change them.

use serde::{Deserialize, Serialize};

use super::schema::SectionReader;
use super::tree::{ConfigError, Key, Source, Table};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackSettings {
    /// `mlflow`: the tracking server's address, `http://HOST:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<String>,
    /// `mlflow_checkpoints`: also upload each run's best checkpoint (they can be large).
    #[serde(default)]
    pub mlflow_checkpoints: bool,
}

pub(super) fn read_track(
    source: &Source,
    table: Option<(&Key, &Table)>,
) -> Result<TrackSettings, ConfigError> {
    let Some((key, table)) = table else {
        return Ok(TrackSettings::default());
    };
    let mut r = SectionReader::new(source, "track", table, Some(key.span.clone()));
    let node = r.peek("mlflow");
    let mlflow = r.string("mlflow")?;
    if let (Some(uri), Some(node)) = (&mlflow, node)
        && let Err(message) = check_tracking_uri(uri)
    {
        return Err(r.error_at(node, "mlflow", message));
    }
    let mlflow_checkpoints = r.boolean("mlflow_checkpoints")?.unwrap_or(false);
    r.finish()?;
    Ok(TrackSettings {
        mlflow,
        mlflow_checkpoints,
    })
}

/// An MLflow tracking URI unet-lab can log to: `http://HOST[:PORT][/PATH]` or `https://…`.
pub fn check_tracking_uri(uri: &str) -> Result<(), String> {
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        Some(_) => Err(format!("\"{uri}\" names no host: write http://HOST:PORT")),
        None => {
            let scheme = uri.split_once("://").map_or(uri, |(s, _)| s);
            Err(format!(
                "\"{uri}\": unet-lab logs to an MLflow tracking server over its REST API, so the \
                 address must start with http:// or https:// (not \"{scheme}\"); for a local \
                 store, start `mlflow server` and give its http://HOST:PORT"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_tracking_uri;

    #[test]
    fn only_http_addresses_with_a_host_are_tracking_uris() {
        assert!(check_tracking_uri("http://127.0.0.1:5000").is_ok());
        assert!(check_tracking_uri("https://mlflow.lab.example/base").is_ok());
        assert!(check_tracking_uri("http://").is_err());
        assert!(
            check_tracking_uri("file:///tmp/mlruns")
                .unwrap_err()
                .contains("(not \"file\")")
        );
        assert!(check_tracking_uri("databricks").is_err());
    }
}
