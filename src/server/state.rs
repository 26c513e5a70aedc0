//! What every handler gets: the engine and the server's own settings.

use std::sync::Arc;

use crate::engine::Engine;
use crate::server::auth::Auth;
use crate::server::site::Site;
use crate::source::receiver::Receivers;

/// The server's state.
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Who may call.
    pub auth: Auth,
    /// Largest request body.
    pub body_limit: usize,
    /// The hosts it answers to and its own origin.
    pub site: Site,
    /// The defined alert sources (`--sources`), each with its endpoint.
    pub sources: Arc<Receivers>,
}

/// The state as handlers receive it.
pub type Shared = Arc<AppState>;
