//! A small client of MLflow's REST API (`/api/2.0/mlflow/…`, JSON) on a blocking HTTP crate:
//! the calls the sink makes, each one request, errors carrying the server's own message.

use std::time::Duration;

use serde_json::{Value, json};

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    #[error("cannot reach the MLflow server at {uri}: {message}")]
    Unreachable { uri: String, message: String },
    #[error("the MLflow server at {uri} answered {status} to {call}: {message}")]
    Server {
        uri: String,
        call: String,
        status: u16,
        /// MLflow's `error_code` (e.g. RESOURCE_ALREADY_EXISTS), when it sent one.
        code: Option<String>,
        message: String,
    },
}

impl MlflowError {
    fn code(&self) -> Option<&str> {
        match self {
            MlflowError::Server { code, .. } => code.as_deref(),
            MlflowError::Unreachable { .. } => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, MlflowError>;

/// A metric point: key, value, timestamp (ms since the epoch) and step.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub key: String,
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
}

/// The server's limits on one `runs/log-batch` call.
pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_PER_BATCH: usize = 100;

pub struct Client {
    uri: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the server at `uri` (`http://HOST:PORT`, checked by the config).
    pub fn new(uri: &str) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(60)))
            .build();
        Client {
            uri: uri.trim_end_matches('/').to_string(),
            agent: config.new_agent(),
        }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn unreachable(&self, e: ureq::Error) -> MlflowError {
        MlflowError::Unreachable {
            uri: self.uri.clone(),
            message: e.to_string(),
        }
    }

    /// The JSON answer of a call, or the server's error.
    fn answer(
        &self,
        call: &str,
        response: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value> {
        let mut response = response.map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.unreachable(e))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let message = body["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                text.chars()
                    .take(300)
                    .collect::<String>()
                    .trim()
                    .to_string()
            });
        Err(MlflowError::Server {
            uri: self.uri.clone(),
            call: call.to_string(),
            status,
            code: body["error_code"].as_str().map(str::to_string),
            message,
        })
    }

    fn post(&self, call: &str, body: &Value) -> Result<Value> {
        let url = format!("{}/api/2.0/mlflow/{call}", self.uri);
        let response = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string());
        self.answer(call, response)
    }

    fn get(&self, call: &str, query: &[(&str, &str)]) -> Result<Value> {
        let mut request = self
            .agent
            .get(format!("{}/api/2.0/mlflow/{call}", self.uri));
        for (k, v) in query {
            request = request.query(*k, *v);
        }
        let response = request.call();
        self.answer(call, response)
    }

    /// The id of the experiment named `name`, created when there is none.
    pub fn experiment_id(&self, name: &str) -> Result<String> {
        match self.post("experiments/create", &json!({ "name": name })) {
            Ok(v) => Ok(v["experiment_id"].as_str().unwrap_or_default().to_string()),
            Err(e) if e.code() == Some("RESOURCE_ALREADY_EXISTS") => {
                let v = self.get("experiments/get-by-name", &[("experiment_name", name)])?;
                Ok(v["experiment"]["experiment_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string())
            }
            Err(e) => Err(e),
        }
    }

    /// The (run id, artifact URI) of the active run tagged `unet_lab.key = key`, if any.
    pub fn find_run(&self, experiment_id: &str, key: &str) -> Result<Option<(String, String)>> {
        let filter = format!("tags.`unet_lab.key` = '{}'", key.replace('\'', "\\'"));
        let v = self.post(
            "runs/search",
            &json!({ "experiment_ids": [experiment_id], "filter": filter, "max_results": 10 }),
        )?;
        Ok(v["runs"]
            .as_array()
            .and_then(|runs| runs.first())
            .map(|run| {
                let info = &run["info"];
                (
                    info["run_id"].as_str().unwrap_or_default().to_string(),
                    info["artifact_uri"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            }))
    }

    /// A new run: its (run id, artifact URI).
    pub fn create_run(
        &self,
        experiment_id: &str,
        name: &str,
        start_ms: i64,
        tags: &[(String, String)],
    ) -> Result<(String, String)> {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect();
        let v = self.post(
            "runs/create",
            &json!({
                "experiment_id": experiment_id,
                "run_name": name,
                "start_time": start_ms,
                "tags": tags,
            }),
        )?;
        let info = &v["run"]["info"];
        Ok((
            info["run_id"].as_str().unwrap_or_default().to_string(),
            info["artifact_uri"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ))
    }

    /// One `runs/log-batch` call (the caller keeps within the limits).
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Point],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<()> {
        let pairs = |list: &[(String, String)]| -> Vec<Value> {
            list.iter()
                .map(|(k, v)| json!({ "key": k, "value": v }))
                .collect()
        };
        let metrics: Vec<Value> = metrics
            .iter()
            .map(|m| {
                json!({ "key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step })
            })
            .collect();
        self.post(
            "runs/log-batch",
            &json!({
                "run_id": run_id,
                "metrics": metrics,
                "params": pairs(params),
                "tags": pairs(tags),
            }),
        )
        .map(|_| ())
    }

    /// Sets a run's status (RUNNING, FINISHED, FAILED, KILLED) and end time.
    pub fn update_run(&self, run_id: &str, status: &str, end_ms: Option<i64>) -> Result<()> {
        let mut body = json!({ "run_id": run_id, "status": status });
        if let Some(end) = end_ms {
            body["end_time"] = json!(end);
        }
        self.post("runs/update", &body).map(|_| ())
    }

    /// The steps of `key` the server holds for a run.
    pub fn metric_steps(&self, run_id: &str, key: &str) -> Result<Vec<i64>> {
        let v = self.get(
            "metrics/get-history",
            &[("run_id", run_id), ("metric_key", key)],
        )?;
        Ok(v["metrics"]
            .as_array()
            .map(|points| points.iter().filter_map(|p| p["step"].as_i64()).collect())
            .unwrap_or_default())
    }

    /// Uploads a file as the artifact `rel_path` of a run whose artifacts the server proxies
    /// (`artifact_uri` `mlflow-artifacts:/…`).
    pub fn upload(&self, artifact_uri: &str, rel_path: &str, bytes: &[u8]) -> Result<()> {
        let Some(root) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(MlflowError::Server {
                uri: self.uri.clone(),
                call: "mlflow-artifacts".into(),
                status: 0,
                code: None,
                message: format!(
                    "the run's artifacts go to {artifact_uri}, which the server does not proxy \
                     (start it with artifact serving, e.g. --artifacts-destination)"
                ),
            });
        };
        // `mlflow-artifacts:/0/abc/artifacts` or `mlflow-artifacts://host:port/0/abc/artifacts`.
        let path = match root.strip_prefix("//") {
            Some(rest) => rest.split_once('/').map_or("", |(_, p)| p).to_string(),
            None => root.trim_start_matches('/').to_string(),
        };
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{path}/{rel_path}",
            self.uri
        );
        let response = self
            .agent
            .put(&url)
            .header("Content-Type", "application/octet-stream")
            .send(bytes);
        self.answer("mlflow-artifacts", response).map(|_| ())
    }
}
