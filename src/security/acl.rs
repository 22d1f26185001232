//! Access control lists with the semantics of Kafka's StandardAuthorizer:
//! the model (bindings, filters, Kafka's codes for every enum), the rules a
//! new binding must satisfy, and the matcher that answers "may this
//! principal, from this host, do this operation on this resource?".
//!
//! Everything here is pure: the broker keeps the bindings in its metadata
//! (see `broker/acls.rs`) and hands them to [`Authorizer::authorize`].
//!
//! The decision, as Kafka makes it:
//! 1. a super user (`super.users`) may do everything;
//! 2. the bindings that apply to the resource are those of its type whose
//!    pattern is LITERAL with its name or `*`, or PREFIXED with a prefix of
//!    its name;
//! 3. a DENY among them for the principal (or `User:*`), the host (or `*`)
//!    and the operation (or ALL) denies;
//! 4. otherwise an ALLOW for the principal, the host and the operation, ALL,
//!    or an operation that implies it (READ, WRITE, DELETE and ALTER imply
//!    DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS) allows;
//! 5. otherwise, when no binding at all applies to the resource,
//!    `allow.everyone.if.no.acl.found` decides; else the answer is no.

use std::collections::HashSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::KafkaPrincipal;

/// The name of the one CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The wildcard resource name, principal name and host.
pub const WILDCARD: &str = "*";
/// The principal that matches every principal.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// The authorizer class names that enable authorization.
pub const AUTHORIZER_CLASSES: &[&str] = &[
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

macro_rules! kafka_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal => $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),*
        }

        impl $name {
            /// Kafka's code on the wire.
            pub fn code(self) -> i8 {
                match self { $(Self::$variant => $code),* }
            }

            /// From Kafka's code; an unknown code is UNKNOWN, as in Kafka.
            pub fn from_code(code: i8) -> Self {
                match code { $($code => Self::$variant,)* _ => Self::Unknown }
            }

            /// Kafka's name (as the tools print it).
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }
        }
    };
}

kafka_enum!(
    /// Kafka's `ResourceType`.
    ResourceType {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        Topic = 2 => "TOPIC",
        Group = 3 => "GROUP",
        Cluster = 4 => "CLUSTER",
        TransactionalId = 5 => "TRANSACTIONAL_ID",
        DelegationToken = 6 => "DELEGATION_TOKEN",
        User = 7 => "USER",
    }
);

kafka_enum!(
    /// Kafka's `PatternType`.
    PatternType {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        Match = 2 => "MATCH",
        Literal = 3 => "LITERAL",
        Prefixed = 4 => "PREFIXED",
    }
);

kafka_enum!(
    /// Kafka's `AclOperation`.
    AclOperation {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        All = 2 => "ALL",
        Read = 3 => "READ",
        Write = 4 => "WRITE",
        Create = 5 => "CREATE",
        Delete = 6 => "DELETE",
        Alter = 7 => "ALTER",
        Describe = 8 => "DESCRIBE",
        ClusterAction = 9 => "CLUSTER_ACTION",
        DescribeConfigs = 10 => "DESCRIBE_CONFIGS",
        AlterConfigs = 11 => "ALTER_CONFIGS",
        IdempotentWrite = 12 => "IDEMPOTENT_WRITE",
        CreateTokens = 13 => "CREATE_TOKENS",
        DescribeTokens = 14 => "DESCRIBE_TOKENS",
        TwoPhaseCommit = 15 => "TWO_PHASE_COMMIT",
    }
);

kafka_enum!(
    /// Kafka's `AclPermissionType`.
    PermissionType {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        Deny = 2 => "DENY",
        Allow = 3 => "ALLOW",
    }
);

impl AclOperation {
    /// The operations whose ALLOW also allows `self` (besides itself and ALL).
    fn implied_by(self) -> &'static [AclOperation] {
        use AclOperation::*;
        match self {
            Describe => &[Read, Write, Delete, Alter],
            DescribeConfigs => &[AlterConfigs],
            _ => &[],
        }
    }
}

impl ResourceType {
    /// The operations a resource of this type has (KIP-430's authorized
    /// operations are reported among these).
    pub fn operations(self) -> &'static [AclOperation] {
        use AclOperation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write, TwoPhaseCommit],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
            _ => &[],
        }
    }
}

/// One ACL: a resource pattern and an entry (who, from where, what, allow or
/// deny). Principals are kept as written (`User:alice`), as Kafka stores them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern_type: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: AclOperation,
    pub permission: PermissionType,
}

impl AclBinding {
    /// Checks a binding CreateAcls is asked to add, as Kafka does; Err is
    /// the message of an INVALID_REQUEST.
    pub fn validate(&self) -> Result<(), String> {
        match self.resource_type {
            ResourceType::Unknown | ResourceType::Any => {
                return Err(format!(
                    "Invalid resourceType {}",
                    self.resource_type.name()
                ));
            }
            _ => {}
        }
        match self.pattern_type {
            PatternType::Literal | PatternType::Prefixed => {}
            p => return Err(format!("Invalid patternType {}", p.name())),
        }
        match self.operation {
            AclOperation::Unknown | AclOperation::Any => {
                return Err(format!("Invalid operation {}", self.operation.name()));
            }
            _ => {}
        }
        match self.permission {
            PermissionType::Allow | PermissionType::Deny => {}
            p => return Err(format!("Invalid permissionType {}", p.name())),
        }
        if self.name.is_empty() {
            return Err("Resource name should not be empty".into());
        }
        if self.pattern_type == PatternType::Prefixed && self.name == WILDCARD {
            return Err("A PREFIXED pattern cannot be the wildcard '*'".into());
        }
        if self.resource_type == ResourceType::Cluster && self.name != CLUSTER_NAME {
            return Err(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        if KafkaPrincipal::parse(&self.principal).is_none() {
            return Err(format!("Invalid principal {}", self.principal));
        }
        if self.host != WILDCARD && self.host.parse::<IpAddr>().is_err() {
            return Err(format!("Invalid host {}", self.host));
        }
        Ok(())
    }

    /// Does this binding's pattern apply to the resource `(kind, name)`?
    fn applies_to(&self, kind: ResourceType, name: &str) -> bool {
        self.resource_type == kind
            && match self.pattern_type {
                PatternType::Literal => self.name == name || self.name == WILDCARD,
                PatternType::Prefixed => name.starts_with(&self.name),
                _ => false,
            }
    }

    fn matches_principal(&self, principal: &str) -> bool {
        self.principal == principal || self.principal == WILDCARD_PRINCIPAL
    }

    fn matches_host(&self, host: &str) -> bool {
        self.host == WILDCARD || self.host == host
    }
}

/// A filter over bindings (DescribeAcls, DeleteAcls): ANY and `None` match
/// everything; pattern type MATCH selects the bindings that apply to the
/// named resource (literal, wildcard and prefixes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: AclOperation,
    pub permission: PermissionType,
}

impl AclFilter {
    /// A filter that matches every binding.
    pub fn any() -> Self {
        Self {
            resource_type: ResourceType::Any,
            name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission: PermissionType::Any,
        }
    }

    /// Checks a filter as Kafka does; Err is the message of an
    /// INVALID_REQUEST.
    pub fn validate(&self) -> Result<(), String> {
        if self.resource_type == ResourceType::Unknown
            || self.pattern_type == PatternType::Unknown
            || self.operation == AclOperation::Unknown
            || self.permission == PermissionType::Unknown
        {
            return Err("The filter contains UNKNOWN elements".into());
        }
        if let Some(p) = &self.principal
            && KafkaPrincipal::parse(p).is_none()
        {
            return Err(format!("Invalid principal filter {p}"));
        }
        Ok(())
    }

    pub fn matches(&self, b: &AclBinding) -> bool {
        self.matches_pattern(b)
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && (self.operation == AclOperation::Any || self.operation == b.operation)
            && (self.permission == PermissionType::Any || self.permission == b.permission)
    }

    fn matches_pattern(&self, b: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != b.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, PatternType::Any | PatternType::Match)
            && self.pattern_type != b.pattern_type
        {
            return false;
        }
        let Some(name) = &self.name else {
            return true;
        };
        if self.pattern_type != PatternType::Match || self.pattern_type == b.pattern_type {
            return *name == b.name;
        }
        match b.pattern_type {
            PatternType::Literal => *name == b.name || b.name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&b.name),
            _ => false,
        }
    }
}

/// What the authorizer was configured with.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    /// `authorizer.class.name` names an authorizer: requests are checked.
    pub enabled: bool,
    /// `super.users`, as written (`User:admin`).
    pub super_users: HashSet<String>,
    /// `allow.everyone.if.no.acl.found`.
    pub allow_everyone_if_no_acl_found: bool,
}

impl Authorizer {
    /// From the three settings; Err names what is wrong.
    pub fn new(class_name: &str, super_users: &str, allow_everyone: bool) -> Result<Self, String> {
        let class_name = class_name.trim();
        if !class_name.is_empty() && !AUTHORIZER_CLASSES.contains(&class_name) {
            return Err(format!(
                "authorizer.class.name: unknown authorizer '{class_name}' (use {} or leave it empty)",
                AUTHORIZER_CLASSES.join(" or ")
            ));
        }
        let mut supers = HashSet::new();
        for p in super_users
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            if KafkaPrincipal::parse(p).is_none() {
                return Err(format!("super.users: '{p}' is not a principal (Type:name)"));
            }
            supers.insert(p.to_owned());
        }
        Ok(Self {
            enabled: !class_name.is_empty(),
            super_users: supers,
            allow_everyone_if_no_acl_found: allow_everyone,
        })
    }

    /// May `principal`, connected from `host`, perform `op` on the resource
    /// `(kind, name)`, given `acls`? (Does not know of inter-broker
    /// sessions or a disabled authorizer: callers check those first.)
    pub fn authorize<'a>(
        &self,
        acls: impl IntoIterator<Item = &'a AclBinding>,
        principal: &KafkaPrincipal,
        host: IpAddr,
        op: AclOperation,
        kind: ResourceType,
        name: &str,
    ) -> bool {
        let principal = principal.to_string();
        if self.super_users.contains(&principal) {
            return true;
        }
        let host = host.to_string();
        let mut any_acl = false;
        let mut allowed = false;
        for b in acls {
            if !b.applies_to(kind, name) {
                continue;
            }
            any_acl = true;
            if !b.matches_principal(&principal) || !b.matches_host(&host) {
                continue;
            }
            let grants = b.operation == op || b.operation == AclOperation::All;
            match b.permission {
                PermissionType::Deny if grants => return false,
                PermissionType::Allow if grants || op.implied_by().contains(&b.operation) => {
                    allowed = true;
                }
                _ => {}
            }
        }
        allowed || (!any_acl && self.allow_everyone_if_no_acl_found)
    }
}

impl Authorizer {
    /// May `principal` perform `op` on some resource of type `kind` (KIP-679:
    /// an idempotent producer needs WRITE on any topic)? Yes for a super
    /// user, or when an ALLOW for it exists that no DENY covers.
    pub fn authorize_any<'a>(
        &self,
        acls: impl IntoIterator<Item = &'a AclBinding> + Clone,
        principal: &KafkaPrincipal,
        host: IpAddr,
        op: AclOperation,
        kind: ResourceType,
    ) -> bool {
        let principal = principal.to_string();
        if self.super_users.contains(&principal) {
            return true;
        }
        let host = host.to_string();
        let applies = |b: &AclBinding, perm: PermissionType| {
            b.resource_type == kind
                && b.permission == perm
                && (b.operation == op || b.operation == AclOperation::All)
                && b.matches_principal(&principal)
                && b.matches_host(&host)
        };
        let denies: Vec<&AclBinding> = acls
            .clone()
            .into_iter()
            .filter(|b| applies(b, PermissionType::Deny))
            .collect();
        acls.into_iter()
            .filter(|b| applies(b, PermissionType::Allow))
            .any(|allow| {
                !denies.iter().any(|d| match d.pattern_type {
                    PatternType::Literal => {
                        d.name == WILDCARD
                            || (allow.pattern_type == PatternType::Literal && d.name == allow.name)
                    }
                    PatternType::Prefixed => allow.name.starts_with(&d.name),
                    _ => false,
                })
            })
    }
}

/// KIP-430's bitfield of operations: bit `code` set for each.
pub fn operations_bitfield(ops: impl IntoIterator<Item = AclOperation>) -> i32 {
    ops.into_iter()
        .fold(0i32, |acc, op| acc | (1i32 << (op.code() as u32 & 31)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use AclOperation::*;

    fn acl(
        kind: ResourceType,
        name: &str,
        pattern: PatternType,
        principal: &str,
        op: AclOperation,
        perm: PermissionType,
    ) -> AclBinding {
        AclBinding {
            resource_type: kind,
            name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    fn topic(name: &str, principal: &str, op: AclOperation, perm: PermissionType) -> AclBinding {
        acl(
            ResourceType::Topic,
            name,
            PatternType::Literal,
            principal,
            op,
            perm,
        )
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn may(a: &Authorizer, acls: &[AclBinding], who: &str, op: AclOperation, t: &str) -> bool {
        let p = KafkaPrincipal::parse(who).unwrap();
        a.authorize(acls, &p, LOCAL, op, ResourceType::Topic, t)
    }

    fn on() -> Authorizer {
        Authorizer::new(AUTHORIZER_CLASSES[0], "", false).unwrap()
    }

    #[test]
    fn deny_wins_over_allow() {
        let a = on();
        let acls = [
            topic("orders", "User:alice", Read, PermissionType::Allow),
            topic("orders", "User:*", Read, PermissionType::Deny),
        ];
        assert!(!may(&a, &acls, "User:alice", Read, "orders"));
        let acls = [
            topic("*", "User:alice", All, PermissionType::Allow),
            topic("orders", "User:alice", All, PermissionType::Deny),
        ];
        assert!(!may(&a, &acls, "User:alice", Write, "orders"));
        assert!(may(&a, &acls, "User:alice", Write, "payments"));
        // A DENY of READ denies no DESCRIBE (denials imply nothing).
        let acls = [
            topic("orders", "User:alice", Describe, PermissionType::Allow),
            topic("orders", "User:alice", Read, PermissionType::Deny),
        ];
        assert!(may(&a, &acls, "User:alice", Describe, "orders"));
        assert!(!may(&a, &acls, "User:alice", Read, "orders"));
    }

    #[test]
    fn wildcards_and_prefixes_apply() {
        let a = on();
        let acls = [
            topic("*", "User:bob", Read, PermissionType::Allow),
            acl(
                ResourceType::Topic,
                "pay",
                PatternType::Prefixed,
                "User:*",
                Write,
                PermissionType::Allow,
            ),
        ];
        assert!(may(&a, &acls, "User:bob", Read, "anything"));
        assert!(!may(&a, &acls, "User:carol", Read, "anything"));
        assert!(may(&a, &acls, "User:carol", Write, "payments"));
        assert!(may(&a, &acls, "User:carol", Write, "pay"));
        assert!(!may(&a, &acls, "User:carol", Write, "pa"));
        assert!(!may(&a, &acls, "User:carol", Write, "orders"));
        // Another resource type never applies.
        let p = KafkaPrincipal::user("bob");
        assert!(!a.authorize(&acls, &p, LOCAL, Read, ResourceType::Group, "anything"));
    }

    #[test]
    fn operations_imply_describe() {
        let a = on();
        for op in [Read, Write, Delete, Alter] {
            let acls = [topic("t", "User:u", op, PermissionType::Allow)];
            assert!(may(&a, &acls, "User:u", Describe, "t"), "{op:?}");
            assert!(!may(&a, &acls, "User:u", DescribeConfigs, "t"), "{op:?}");
        }
        let acls = [topic("t", "User:u", AlterConfigs, PermissionType::Allow)];
        assert!(may(&a, &acls, "User:u", DescribeConfigs, "t"));
        assert!(!may(&a, &acls, "User:u", Describe, "t"));
        let acls = [topic("t", "User:u", Create, PermissionType::Allow)];
        assert!(!may(&a, &acls, "User:u", Describe, "t"));
        let acls = [topic("t", "User:u", All, PermissionType::Allow)];
        for op in ResourceType::Topic.operations() {
            assert!(may(&a, &acls, "User:u", *op, "t"));
        }
        let acls = [topic("t", "User:u", Read, PermissionType::Allow)];
        assert!(!may(&a, &acls, "User:u", Write, "t"));
    }

    #[test]
    fn hosts_must_match() {
        let a = on();
        let mut b = topic("t", "User:u", Read, PermissionType::Allow);
        b.host = "10.0.0.1".into();
        assert!(!may(&a, std::slice::from_ref(&b), "User:u", Read, "t"));
        b.host = "127.0.0.1".into();
        assert!(may(&a, &[b], "User:u", Read, "t"));
    }

    #[test]
    fn super_users_and_allow_everyone() {
        let a = Authorizer::new(AUTHORIZER_CLASSES[1], "User:admin; User:ops", false).unwrap();
        assert!(a.enabled);
        let deny = [topic("t", "User:*", All, PermissionType::Deny)];
        assert!(may(&a, &deny, "User:admin", Write, "t"));
        assert!(may(&a, &deny, "User:ops", Write, "t"));
        assert!(!may(&a, &deny, "User:u", Write, "t"));
        assert!(
            !may(&a, &[], "User:u", Write, "t"),
            "no ACL: denied by default"
        );
        let open = Authorizer::new(AUTHORIZER_CLASSES[0], "", true).unwrap();
        assert!(may(&open, &[], "User:u", Write, "t"));
        // Any binding on the resource, even for someone else, closes it.
        let other = [topic("t", "User:v", Read, PermissionType::Allow)];
        assert!(!may(&open, &other, "User:u", Write, "t"));
        assert!(may(&open, &other, "User:u", Write, "t2"));
        let prefixed = [acl(
            ResourceType::Topic,
            "t",
            PatternType::Prefixed,
            "User:v",
            Read,
            PermissionType::Allow,
        )];
        assert!(!may(&open, &prefixed, "User:u", Write, "t2"));
        assert!(!Authorizer::new("", "", false).unwrap().enabled);
        assert!(Authorizer::new("com.example.Mine", "", false).is_err());
        assert!(Authorizer::new("", "admin", false).is_err());
    }

    #[test]
    fn bindings_are_validated_as_kafka_does() {
        let good = topic("t", "User:u", Read, PermissionType::Allow);
        assert!(good.validate().is_ok());
        let bad = |f: &dyn Fn(&mut AclBinding)| {
            let mut b = good.clone();
            f(&mut b);
            b.validate().is_err()
        };
        assert!(bad(&|b| b.name = String::new()));
        assert!(bad(&|b| {
            b.pattern_type = PatternType::Prefixed;
            b.name = "*".into()
        }));
        assert!(bad(&|b| b.pattern_type = PatternType::Match));
        assert!(bad(&|b| b.pattern_type = PatternType::Any));
        assert!(bad(&|b| b.operation = AclOperation::Any));
        assert!(bad(&|b| b.permission = PermissionType::Unknown));
        assert!(bad(&|b| b.resource_type = ResourceType::Any));
        assert!(bad(&|b| b.principal = "alice".into()));
        assert!(bad(&|b| b.host = "not a host".into()));
        assert!(bad(&|b| {
            b.resource_type = ResourceType::Cluster;
            b.name = "other".into()
        }));
        let mut cluster = good.clone();
        cluster.resource_type = ResourceType::Cluster;
        cluster.name = CLUSTER_NAME.into();
        assert!(cluster.validate().is_ok());
        assert_eq!(AclOperation::from_code(99), AclOperation::Unknown);
        assert_eq!(PatternType::from_code(4), PatternType::Prefixed);
    }

    #[test]
    fn filters_match_any_literal_and_match() {
        let lit = topic("orders", "User:u", Read, PermissionType::Allow);
        let star = topic("*", "User:u", Read, PermissionType::Allow);
        let pre = acl(
            ResourceType::Topic,
            "ord",
            PatternType::Prefixed,
            "User:u",
            Read,
            PermissionType::Allow,
        );
        let all = [lit.clone(), star.clone(), pre.clone()];
        let count = |f: &AclFilter| all.iter().filter(|b| f.matches(b)).count();
        assert_eq!(count(&AclFilter::any()), 3);
        let mut f = AclFilter::any();
        f.name = Some("orders".into());
        assert_eq!(count(&f), 1, "ANY with a name: that exact name");
        f.pattern_type = PatternType::Match;
        assert_eq!(count(&f), 3, "MATCH: literal, wildcard and prefix");
        f.pattern_type = PatternType::Prefixed;
        assert_eq!(count(&f), 0);
        f.name = Some("ord".into());
        assert_eq!(count(&f), 1);
        let mut f = AclFilter::any();
        f.resource_type = ResourceType::Group;
        assert_eq!(count(&f), 0);
        let mut f = AclFilter::any();
        f.principal = Some("User:v".into());
        assert_eq!(count(&f), 0);
        let mut f = AclFilter::any();
        f.operation = Write;
        assert_eq!(count(&f), 0);
        f.operation = Read;
        f.permission = PermissionType::Deny;
        assert_eq!(count(&f), 0);
        let mut f = AclFilter::any();
        f.pattern_type = PatternType::Unknown;
        assert!(f.validate().is_err());
        assert!(AclFilter::any().validate().is_ok());
    }

    #[test]
    fn any_resource_of_a_type() {
        let a = on();
        let p = KafkaPrincipal::user("u");
        let any =
            |acls: &[AclBinding]| a.authorize_any(acls, &p, LOCAL, Write, ResourceType::Topic);
        assert!(!any(&[]));
        assert!(any(&[topic("t", "User:u", Write, PermissionType::Allow)]));
        assert!(any(&[topic("t", "User:*", All, PermissionType::Allow)]));
        assert!(!any(&[topic("t", "User:u", Read, PermissionType::Allow)]));
        assert!(!any(&[
            topic("t", "User:u", Write, PermissionType::Allow),
            topic("*", "User:u", Write, PermissionType::Deny),
        ]));
        assert!(any(&[
            topic("t", "User:u", Write, PermissionType::Allow),
            topic("s", "User:u", Write, PermissionType::Deny),
        ]));
    }

    #[test]
    fn authorized_operations_bitfield_uses_kafka_codes() {
        assert_eq!(operations_bitfield([Read]), 1 << 3);
        assert_eq!(operations_bitfield([Read, Describe]), (1 << 3) | (1 << 8));
        assert_eq!(operations_bitfield([]), 0);
    }
}
