package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Mode is how a segment's traffic is judged.
// +kubebuilder:validation:Enum=discover;monitor;protect
type Mode string

const (
	// ModeDiscover allows everything and learns every flow as a rule.
	ModeDiscover Mode = "discover"
	// ModeMonitor allows everything and reports what no rule allows.
	ModeMonitor Mode = "monitor"
	// ModeProtect blocks and reports what no rule allows.
	ModeProtect Mode = "protect"
)

// Origin says who wrote a rule.
// +kubebuilder:validation:Enum=learned;user
type Origin string

const (
	// OriginUser marks a rule a person (or GitOps) wrote.
	OriginUser Origin = "user"
	// OriginLearned marks a rule the control plane learned in discover mode.
	OriginLearned Origin = "learned"
)

// Protocol names, as used in CRDs, xDS and metrics. "tcp" means L4 only.
const (
	ProtocolTCP       = "tcp"
	ProtocolRedis     = "redis"
	ProtocolHTTP      = "http"  // HTTP/1.1
	ProtocolHTTP2     = "http2" // HTTP/2 (h2c), gRPC included
	ProtocolTLS       = "tls"
	ProtocolDNS       = "dns"
	ProtocolMySQL     = "mysql"
	ProtocolPostgres  = "postgres"
	ProtocolKafka     = "kafka"
	ProtocolMemcached = "memcached"
	ProtocolMongoDB   = "mongodb"
)

// SegmentPolicy is the policy of one segment: which workloads form it, the
// mode it is judged under, and the flows it allows in and out.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=segpol;sp,categories=bulkhead
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Rules",type=integer,JSONPath=`.status.ruleCount`
// +kubebuilder:printcolumn:name="Learned",type=integer,JSONPath=`.status.learnedRules`
// +kubebuilder:printcolumn:name="Violations",type=integer,JSONPath=`.status.violations`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Proxies",type=integer,JSONPath=`.status.proxies`,priority=1
// +kubebuilder:printcolumn:name="Current",type=integer,JSONPath=`.status.proxiesCurrent`,priority=1
type SegmentPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SegmentPolicySpec   `json:"spec"`
	Status SegmentPolicyStatus `json:"status,omitempty"`
}

// SegmentPolicySpec is the desired policy of a segment. The segment's name is
// the policy's metadata.name; its namespace is the policy's namespace.
type SegmentPolicySpec struct {
	// Selector picks the workloads of this namespace that form the segment,
	// by their labels. Empty: the workloads whose owner (Deployment,
	// StatefulSet, DaemonSet, or the standalone workload's "segment" field)
	// has the policy's name.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// Mode is how the segment's traffic is judged. Empty: the namespace's
	// default, else the cluster's default.
	// +optional
	Mode Mode `json:"mode,omitempty"`

	// Promotion, when enabled, moves the segment from discover to monitor
	// to protect on its own once it has been quiet long enough.
	// +optional
	Promotion *Promotion `json:"promotion,omitempty"`

	// Learning bounds what discover mode learns for this segment (from
	// whom, when). Empty: everything, always.
	// +optional
	Learning *Learning `json:"learning,omitempty"`

	// Infrastructure, when disabled, drops the control plane's
	// infrastructure allowances (kubelet probes, metrics scraping, DNS to
	// the cluster resolvers) from this segment. Empty: they apply as the
	// control plane's settings configure them.
	// +optional
	Infrastructure *Infrastructure `json:"infrastructure,omitempty"`

	// Ingress lists the flows allowed into the segment's workloads. Rules
	// (here and in Egress) are keyed by name: server-side apply merges them
	// rule by rule, so each field manager (a person, GitOps, the learner)
	// owns its own rules.
	// +optional
	// +listType=map
	// +listMapKey=name
	Ingress []Rule `json:"ingress,omitempty"`

	// Egress lists the flows allowed out of the segment's workloads.
	// +optional
	// +listType=map
	// +listMapKey=name
	Egress []Rule `json:"egress,omitempty"`
}

// Infrastructure is a segment's choice about the infrastructure allowances.
type Infrastructure struct {
	// Disabled drops every infrastructure allowance from the segment.
	// +optional
	Disabled bool `json:"disabled,omitempty"`
}

// InfraRulePrefix starts the names of the rules the control plane adds for
// infrastructure traffic ("bulkhead-infra-probes", …). A policy's own rules
// may not use it.
const InfraRulePrefix = "bulkhead-infra-"

// Rule is one allowed pattern of flows: peers, ports with their protocol and
// L7 matchers. A flow is allowed when its peer matches one of Peers (or Peers
// is empty: any peer), its port one of Ports, and its L7 fields the matcher of
// its protocol (no matcher: every message).
type Rule struct {
	// Name identifies the rule within its policy (hits, violations, xDS).
	// Learned rules get a deterministic name. The prefix "bulkhead-infra-"
	// is reserved for the infrastructure allowances.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('bulkhead-infra-')",message="the prefix bulkhead-infra- is reserved for infrastructure allowances"
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name"`

	// Origin says who wrote the rule.
	// +kubebuilder:default=user
	// +optional
	Origin Origin `json:"origin,omitempty"`

	// LearnedFrom records, for a learned rule, which proxy reported which
	// flow that taught it first.
	// +optional
	LearnedFrom *LearnedFrom `json:"learnedFrom,omitempty"`

	// Peers are the other ends of the flow: the source for ingress, the
	// destination for egress. Empty: any peer.
	// +optional
	// +listType=atomic
	Peers []Peer `json:"peers,omitempty"`

	// Ports are the destination ports, each with its protocol.
	// +kubebuilder:validation:MinItems=1
	// +listType=atomic
	Ports []PortProtocol `json:"ports"`

	// Redis restricts Redis traffic to these commands.
	// +optional
	Redis *RedisMatch `json:"redis,omitempty"`

	// HTTP restricts HTTP/1.1 and HTTP/2 requests.
	// +optional
	HTTP *HTTPMatch `json:"http,omitempty"`
	// GRPC restricts gRPC calls (on http2 ports).
	// +optional
	GRPC *GRPCMatch `json:"grpc,omitempty"`
	// TLS restricts TLS connections by the server name they ask for.
	// +optional
	TLS *TLSMatch `json:"tls,omitempty"`
	// DNS restricts DNS queries.
	// +optional
	DNS *DNSMatch `json:"dns,omitempty"`
	// SQL restricts MySQL and PostgreSQL statements.
	// +optional
	SQL *SQLMatch `json:"sql,omitempty"`
	// Kafka restricts Kafka requests.
	// +optional
	Kafka *KafkaMatch `json:"kafka,omitempty"`
	// Memcached restricts memcached commands.
	// +optional
	Memcached *MemcachedMatch `json:"memcached,omitempty"`
	// MongoDB restricts MongoDB commands.
	// +optional
	MongoDB *MongoDBMatch `json:"mongodb,omitempty"`
}

// Peer is one end of a flow. Exactly one of Segment, Namespace (alone), CIDR
// or FQDN is the selector; Namespace qualifies Segment.
type Peer struct {
	// Segment names a segment. With Namespace empty, the policy's own
	// namespace.
	// +optional
	Segment string `json:"segment,omitempty"`
	// Namespace alone: every workload of that namespace. With Segment: the
	// segment's namespace.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// CIDR is an address block outside the mesh, e.g. 198.18.0.0/24.
	// +optional
	CIDR string `json:"cidr,omitempty"`
	// FQDN is a DNS name outside the mesh, for egress rules only: exact
	// ("api.example.com") or every name below a domain ("*.example.com",
	// which does not match example.com itself); lower case, a final dot is
	// dropped. It matches the addresses the name resolved to in the DNS
	// answers the workload's own sidecar relayed, while their TTL lasts, so
	// the workload's DNS queries must go through the sidecar (captured
	// outbound UDP/53) and be allowed by an egress rule on port 53.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^(\*\.)?[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?(\.[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?)*\.?$`
	// +optional
	FQDN string `json:"fqdn,omitempty"`
}

// PortProtocol is a destination port and the protocol spoken on it.
type PortProtocol struct {
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// Protocol is the application protocol: "tcp" (L4 only) or the name of
	// a parsed protocol ("redis", …).
	// +kubebuilder:default=tcp
	// +optional
	Protocol string `json:"protocol,omitempty"`
}

// RedisMatch allows Redis commands by name, case-insensitive. A command with
// sub-commands may be narrowed with Redis's ACL notation: "config|get".
type RedisMatch struct {
	// +kubebuilder:validation:MinItems=1
	// +listType=set
	Commands []string `json:"commands"`
}

// HTTPMatch allows HTTP requests. Every list left empty allows anything. A
// request is allowed when its method, normalised path and host each match.
type HTTPMatch struct {
	// Methods, upper case: GET, POST…
	// +optional
	// +listType=set
	Methods []string `json:"methods,omitempty"`
	// Paths: exact ("/healthz"), prefix ("/static/*") or template
	// ("/users/{id}", "/files/{*}"), matched against the normalised path
	// (percent-decoded, dot-segments removed, repeated slashes folded, ";"
	// parameters dropped).
	// +optional
	// +listType=set
	Paths []string `json:"paths,omitempty"`
	// Hosts: exact or "*.suffix", case-insensitive, port ignored.
	// +optional
	// +listType=set
	Hosts []string `json:"hosts,omitempty"`
}

// GRPCMatch allows gRPC methods: "package.Service/Method" or
// "package.Service/*".
type GRPCMatch struct {
	// +kubebuilder:validation:MinItems=1
	// +listType=set
	Methods []string `json:"methods"`
}

// TLSMatch allows TLS connections whose ClientHello names one of these
// servers (SNI): exact or "*.suffix", case-insensitive.
type TLSMatch struct {
	// +kubebuilder:validation:MinItems=1
	// +listType=set
	ServerNames []string `json:"serverNames"`
}

// DNSMatch allows DNS queries by name (exact or "*.suffix",
// case-insensitive) and type (A, AAAA, …; empty: any).
type DNSMatch struct {
	// +kubebuilder:validation:MinItems=1
	// +listType=set
	Names []string `json:"names"`
	// +optional
	// +listType=set
	Types []string `json:"types,omitempty"`
}

// SQLMatch allows SQL statements by verb (SELECT, INSERT, COPY_PROGRAM…),
// database and the tables they name ("schema.table" or "table",
// case-insensitive; "schema.*" for every table of a schema). Empty lists
// allow anything. A table matches as the statement writes it: "orders"
// allows "FROM orders", not "FROM shop.orders" (list both for either), so
// that an unqualified name never reaches another schema. Databases compare
// case-insensitively. Listed verbs that never name a table (BEGIN, START,
// COMMIT, ROLLBACK, SAVEPOINT, RELEASE, END, ABORT, USE) are allowed
// without one; a statement of another verb that names no table ("SELECT 1")
// is allowed only when Tables is empty.
type SQLMatch struct {
	// +optional
	// +listType=set
	Verbs []string `json:"verbs,omitempty"`
	// +optional
	// +listType=set
	Databases []string `json:"databases,omitempty"`
	// +optional
	// +listType=set
	Tables []string `json:"tables,omitempty"`
}

// KafkaMatch allows Kafka requests by role (produce, consume, admin) or API
// name (Produce, Fetch, Metadata…), topic (exact or "prefix*") and client
// id (exact). Empty lists allow anything. A role stands for the APIs its
// clients use — produce: Produce, InitProducerId, AddPartitionsToTxn,
// AddOffsetsToTxn, EndTxn, TxnOffsetCommit, FindCoordinator; consume: Fetch,
// ListOffsets, OffsetCommit, OffsetFetch, JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup, FindCoordinator, OffsetForLeaderEpoch, ConsumerGroupHeartbeat;
// admin: the topic, partition, config, ACL, group, quota, credential,
// token and cluster administration APIs — and every role also allows
// ApiVersions, Metadata, SaslHandshake and SaslAuthenticate. Topics restrict
// the requests that name topics; listed APIs that never name one
// (ApiVersions, Metadata, group coordination, transaction markers…) are
// allowed without, so Metadata is answered for any topic.
type KafkaMatch struct {
	// +optional
	// +listType=set
	Roles []string `json:"roles,omitempty"`
	// +optional
	// +listType=set
	APIs []string `json:"apis,omitempty"`
	// +optional
	// +listType=set
	Topics []string `json:"topics,omitempty"`
	// +optional
	// +listType=set
	ClientIDs []string `json:"clientIDs,omitempty"`
}

// MemcachedMatch allows memcached commands, optionally only on keys with one
// of the prefixes. Listed commands that name no key (version, stats,
// flush_all…) are allowed whatever the prefixes; with no commands listed,
// only commands on keys with a listed prefix are.
type MemcachedMatch struct {
	// +optional
	// +listType=set
	Commands []string `json:"commands,omitempty"`
	// +optional
	// +listType=set
	KeyPrefixes []string `json:"keyPrefixes,omitempty"`
}

// MongoDBMatch allows MongoDB commands (find, insert, …) by database and
// collection. Empty lists allow anything. Listed commands that name no
// collection (hello, isMaster, ping, saslStart, listCollections…) are
// allowed whatever the collections, in the listed databases; drivers send
// their handshake to "admin".
type MongoDBMatch struct {
	// +optional
	// +listType=set
	Commands []string `json:"commands,omitempty"`
	// +optional
	// +listType=set
	Databases []string `json:"databases,omitempty"`
	// +optional
	// +listType=set
	Collections []string `json:"collections,omitempty"`
}

// SegmentPolicyStatus is what the control plane observed. It is never
// exported.
type SegmentPolicyStatus struct {
	// +optional
	IngressRules int32 `json:"ingressRules,omitempty"`
	// RuleCount is the number of rules, both directions.
	// +optional
	RuleCount int32 `json:"ruleCount,omitempty"`
	// +optional
	LearnedRules int32 `json:"learnedRules,omitempty"`
	// Proxies counts the connected proxies of the segment (in a cluster).
	// +optional
	Proxies int32 `json:"proxies,omitempty"`
	// ProxiesCurrent counts those of Proxies that acknowledged the
	// current revision of the segment's compiled policy.
	// +optional
	ProxiesCurrent int32 `json:"proxiesCurrent,omitempty"`
	// Violations counts the messages no rule allowed.
	// +optional
	Violations int64 `json:"violations,omitempty"`
	// Rules carries per-rule hits.
	// +optional
	// +listType=atomic
	Rules []RuleStatus `json:"rules,omitempty"`
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// RuleStatus is how often a rule allowed traffic.
type RuleStatus struct {
	Name string `json:"name"`
	// +optional
	Hits int64 `json:"hits,omitempty"`
	// +optional
	LastHit *metav1.Time `json:"lastHit,omitempty"`
}

// SegmentPolicyList is a list of SegmentPolicy.
//
// +kubebuilder:object:root=true
type SegmentPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SegmentPolicy `json:"items"`
}
