//! Verbs that only one role serves. A node registers only the admin
//! services its role serves, so a verb of the other role is answered with
//! gRPC Unimplemented (tonic's answer for an unregistered service); this
//! module turns that into one line that names the role serving the verb and
//! what the node is.

use std::path::Path;

use anyhow::anyhow;
use postern_model::NodeRole;
use postern_proto::admin as pb;

use crate::client::{connect, status};

/// An admin verb that only one role serves.
#[derive(Clone, Copy, Debug)]
pub struct RoleVerb {
    /// The verb as typed after `postern`, e.g. `edge-subscription import`.
    pub words: &'static str,
    /// The role whose nodes serve it.
    pub served_by: NodeRole,
}

impl RoleVerb {
    /// A verb only hubs serve.
    pub const fn hub(words: &'static str) -> Self {
        Self {
            words,
            served_by: NodeRole::Hub,
        }
    }

    /// A verb only edges serve.
    pub const fn edge(words: &'static str) -> Self {
        Self {
            words,
            served_by: NodeRole::Edge,
        }
    }

    /// Awaits one admin call of this verb on `node`. A node of the other
    /// role answers Unimplemented: that becomes the line saying which role
    /// serves the verb; any other status is its message.
    pub async fn call<T>(
        self,
        node: &Path,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> anyhow::Result<T> {
        match call.await {
            Ok(reply) => Ok(reply.into_inner()),
            Err(s) if s.code() == tonic::Code::Unimplemented => Err(self.refusal(node).await),
            Err(s) => Err(status(s)),
        }
    }

    /// The line for a node that does not serve this verb, naming the node
    /// and its role when the node says who it is.
    async fn refusal(self, node: &Path) -> anyhow::Error {
        let served = format!("`postern {}` is served by {}s", self.words, self.served_by);
        match identity(node).await {
            Ok(id) => match role_named(&id.role) {
                Some(role) => anyhow!("{served}; {} is {}", id.name, with_article(role)),
                None => anyhow!("{served}; {} is a {:?} node", id.name, id.role),
            },
            Err(e) => anyhow!("{served}; the node in {} does not serve it ({e})", node.display()),
        }
    }
}

/// The node's identity as it reports it.
async fn identity(node: &Path) -> anyhow::Result<pb::NodeIdentity> {
    let mut client = pb::node_client::NodeClient::new(connect(node).await?);
    Ok(client
        .get_identity(pb::GetIdentityRequest {})
        .await
        .map_err(status)?
        .into_inner())
}

/// The role a node reports in `NodeIdentity.role`.
fn role_named(role: &str) -> Option<NodeRole> {
    [NodeRole::Hub, NodeRole::Edge]
        .into_iter()
        .find(|r| r.to_string() == role)
}

/// "a hub", "an edge".
fn with_article(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Hub => "a hub",
        NodeRole::Edge => "an edge",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_back_from_their_names() {
        assert_eq!(role_named("hub"), Some(NodeRole::Hub));
        assert_eq!(role_named("edge"), Some(NodeRole::Edge));
        assert_eq!(role_named("relay"), None);
        assert_eq!(with_article(NodeRole::Edge), "an edge");
        assert_eq!(with_article(NodeRole::Hub), "a hub");
    }
}
