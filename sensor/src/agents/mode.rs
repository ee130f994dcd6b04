//! What an agent identity's findings lead to.
//!
//! - `learn`: its calls build its baseline; only rules that need no
//!   baseline (repetition, borrowed credentials, the policy's denies and
//!   quotas) raise findings, and responses are only reported.
//! - `monitor`: checked against the baseline; findings are raised and the
//!   response policy's actions are reported as what would be done.
//! - `enforce`: the same, and the actions are done.
//!
//! A new identity learns for its first `agents.learn_sessions` runs (or
//! `agents.learn_minutes`), then enters `response.mode` (or its
//! `response.agents` entry). An operator (`sensor baseline mode`) or the
//! policy file can pin any mode; every change is a `mode` event.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Learn,
    Monitor,
    Enforce,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Learn => "learn",
            Self::Monitor => "monitor",
            Self::Enforce => "enforce",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "learn" => Self::Learn,
            "monitor" => Self::Monitor,
            "enforce" => Self::Enforce,
            _ => return None,
        })
    }
}

impl From<crate::config::ResponseMode> for Mode {
    fn from(m: crate::config::ResponseMode) -> Self {
        match m {
            crate::config::ResponseMode::Monitor => Self::Monitor,
            crate::config::ResponseMode::Enforce => Self::Enforce,
        }
    }
}
