//! The automatic-action budget: at most `max_actions_per_minute` actions
//! taken by policy for each agent identity run by each user.
//!
//! It was one budget for the host, so a user's own agents (decoys raising
//! findings in enforce mode, or simply runs of the same command) could
//! spend it and leave a runaway agent of another identity, or another
//! user's run of the same one, untouched (issue 19, finding 9). Keyed by
//! identity and uid, a user spends only the budget of what they run: an
//! agent's identity is its command, which any user can run, so the uid
//! is what keeps one user's runs from spending another's.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

const WINDOW: Duration = Duration::from_secs(60);

pub struct ActionBudget {
    per_minute: usize,
    /// (agent id, uid) → when its actions in the last minute were taken.
    spent: HashMap<(String, u32), VecDeque<Instant>>,
}

impl ActionBudget {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute as usize,
            spent: HashMap::new(),
        }
    }

    /// Takes one action from the budget of agent `agent_id` run by `uid`
    /// at `now`; false when that budget is spent for the minute.
    pub fn take(&mut self, agent_id: &str, uid: u32, now: Instant) -> bool {
        // Forget what is older than the window, for every key: the map
        // holds only keys that acted in the last minute (each action
        // stops or cuts off a process, so there are few).
        self.spent.retain(|_, times| {
            while times
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) > WINDOW)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
        let times = self.spent.entry((agent_id.to_string(), uid)).or_default();
        if times.len() >= self.per_minute {
            return false;
        }
        times.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_users_agents_cannot_spend_anothers_budget() {
        let mut b = ActionBudget::new(3);
        let t0 = Instant::now();
        // A user's decoys, and that user's runs of the real agent's command.
        for _ in 0..3 {
            assert!(b.take("ordering", 1000, t0));
        }
        assert!(!b.take("ordering", 1000, t0));
        for i in 0..50 {
            assert!(b.take(&format!("decoy-{i}"), 1000, t0));
        }
        // The same agent run by another user, and another agent: untouched.
        assert!(b.take("ordering", 0, t0));
        assert!(b.take("billing", 1000, t0));
        // A minute later the spent budget is back, and old keys are gone.
        let later = t0 + WINDOW + Duration::from_millis(1);
        assert!(b.take("ordering", 1000, later));
        assert_eq!(b.spent.len(), 1);
    }
}
