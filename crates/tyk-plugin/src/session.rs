//! TEMPORARY stand-in (the real module is being written on another branch).
#![allow(missing_docs)]
use tyk_coprocess::SessionState;

pub struct Session {
    token: String,
    state: SessionState,
}
pub struct SessionBuilder {
    token: String,
    state: SessionState,
}
#[derive(Debug, thiserror::Error)]
#[error("empty token")]
pub struct SessionError;

impl Session {
    pub fn builder(token: impl Into<String>) -> SessionBuilder {
        SessionBuilder {
            token: token.into(),
            state: SessionState::default(),
        }
    }
    pub fn token(&self) -> &str {
        &self.token
    }
    pub fn into_state(self) -> SessionState {
        self.state
    }
}
impl SessionBuilder {
    pub fn rate(mut self, rate: f64, per: std::time::Duration) -> Self {
        self.state.rate = rate;
        self.state.per = per.as_secs_f64();
        self
    }
    pub fn build(self) -> Result<Session, SessionError> {
        if self.token.is_empty() {
            return Err(SessionError);
        }
        Ok(Session {
            token: self.token,
            state: self.state,
        })
    }
}
