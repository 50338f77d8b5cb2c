//! Postern's vocabulary, shared by every crate and free of I/O.
//!
//! Newtypes for the words of the domain (`Domain`, `Thumbprint`,
//! `ConfigVersion`, `QueueId`, …) are parsed once, here, so the rest of the code can
//! trust them; the objects that EdgeSync replicates live here too, so the
//! control plane need not depend on the SMTP engine to read them.

pub mod cert;
pub mod config;
pub mod delivery;
pub mod dkim;
pub mod domain;
pub mod ip_range;
pub mod node;
pub mod object_kind;
pub mod peer_text;
pub mod protocol_log;
pub mod queue_id;
pub mod receive_limits;
pub mod subject;
pub mod thumbprint;
pub mod version;

pub use cert::{CertStatus, KeySpec, KeySpecError, Service, ServiceError};
pub use config::{
    AcceptedDomain, AcceptedDomainKind, AddressSpace, AuthMechanism, BadObjectJson, Change, ChangeOp,
    DomainPattern, EdgeInfo, HubInfo, MailboxEntry, MailboxHash, ObjectKey, PermissionGroup,
    ReceiveConnector, ReplicatedObject, SendConnector, TlsAuthLevel, TransportConfig, TrustedRoot,
};
pub use config::{MtaStsPublication, MtaStsPublishMode};
pub use delivery::{LmtpServer, MailboxDelivery, MailboxDeliveryError};
pub use dkim::{DkimKeyType, DmarcEnforcement, Selector};
pub use domain::{Domain, DomainError};
pub use ip_range::{IpRange, IpRangeError};
pub use node::{NodeIdentity, NodeName, NodeNameError, NodeRole};
pub use object_kind::{AdminObjectKind, ObjectKind, UnknownObjectKind};
pub use peer_text::{PeerText, peer_text};
pub use protocol_log::{ProtocolLoggingLevel, ProtocolLoggingLevelError};
pub use queue_id::{QueueId, QueueIdError};
pub use receive_limits::{CountLimit, EffectiveLimits, ReceiveLimits, TimeSpan};
pub use subject::{DnAttribute, SubjectName, SubjectNameError};
pub use thumbprint::{Thumbprint, ThumbprintError};
pub use version::ConfigVersion;
