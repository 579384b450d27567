//! JSON types of the local platform's admin API (`/v1/...`), spoken by the platform and by the
//! activities' client.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The two colours of a blue-green pair.
pub const COLORS: [&str; 2] = ["blue", "green"];

/// `PUT /v1/instances`: run `replicas` instances of `version` for a service's colour.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InstancesSpec {
    pub service: String,
    pub color: String,
    pub version: String,
    pub replicas: u32,
}

/// `POST /v1/switch`: point services at colours. `atomic` swaps all of them in one step;
/// otherwise they move one after another in the given order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SwitchRequest {
    /// Idempotency key: a repeated request returns the first answer and moves nothing.
    pub request_id: String,
    pub assignments: Vec<Assignment>,
    #[serde(default)]
    pub atomic: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Assignment {
    pub service: String,
    pub color: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct SwitchResponse {
    pub request_id: String,
    /// Services whose routing changed (empty when all already pointed there).
    pub changed: Vec<String>,
    /// Colour per service before the request.
    pub previous: BTreeMap<String, String>,
    /// Microseconds between the first and the last service's route change.
    pub switch_us: u64,
    /// True when this answer is a replay of an earlier request with the same id.
    pub replayed: bool,
}

/// `PUT /v1/weights`: per service, percent of traffic per colour (sums to 100).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WeightsRequest {
    pub request_id: String,
    pub weights: BTreeMap<String, BTreeMap<String, u32>>,
}

/// `GET /v1/state`.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct PlatformState {
    pub services: BTreeMap<String, ServiceState>,
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct ServiceState {
    /// Address of the service's router listener (what clients call).
    pub listen: String,
    /// Percent of traffic per colour.
    pub weights: BTreeMap<String, u32>,
    pub colors: BTreeMap<String, ColorState>,
}

impl ServiceState {
    /// The colour that takes all traffic, if one does.
    pub fn active_color(&self) -> Option<&str> {
        self.weights
            .iter()
            .find(|(_, w)| **w == 100)
            .map(|(c, _)| c.as_str())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct ColorState {
    pub version: String,
    pub replicas: u32,
    pub ready: u32,
    pub instances: Vec<InstanceState>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstanceState {
    pub addr: String,
    pub pid: u32,
    pub ready: bool,
    pub restarts: u32,
    pub in_flight: i64,
}

/// `GET /v1/stats`: cumulative RED counters per service and colour, as the router saw them.
#[derive(Clone, Debug, Serialize, Deserialize, Default, PartialEq)]
pub struct Stats {
    /// Upper bounds of the latency histogram buckets, in seconds.
    pub buckets: Vec<f64>,
    pub series: BTreeMap<String, BTreeMap<String, SeriesStats>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, Default, PartialEq)]
pub struct SeriesStats {
    pub requests: u64,
    /// Responses with a 5xx code, including the router's own 502/503.
    pub errors: u64,
    /// Cumulative counts per bucket (same length as `Stats::buckets`).
    pub bucket_counts: Vec<u64>,
}

/// One traffic move in the platform's journal (`GET /v1/journal`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JournalEntry {
    pub request_id: String,
    pub kind: String,
    pub changed: Vec<String>,
    pub unix_ms: u64,
}

/// Error body of every non-2xx admin answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    /// Stable kind a client can branch on: `bad_request`, `not_found`, `conflict`.
    pub kind: String,
}
