package vocab

import (
	"slices"
	"strings"
)

// kafkaAPIs are Kafka's API names, indexed by API key, as Apache Kafka
// spells them.
var kafkaAPIs = [...]string{
	"Produce", "Fetch", "ListOffsets", "Metadata", "LeaderAndIsr", "StopReplica", "UpdateMetadata",
	"ControlledShutdown", "OffsetCommit", "OffsetFetch", "FindCoordinator", "JoinGroup", "Heartbeat",
	"LeaveGroup", "SyncGroup", "DescribeGroups", "ListGroups", "SaslHandshake", "ApiVersions",
	"CreateTopics", "DeleteTopics", "DeleteRecords", "InitProducerId", "OffsetForLeaderEpoch",
	"AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn", "WriteTxnMarkers", "TxnOffsetCommit",
	"DescribeAcls", "CreateAcls", "DeleteAcls", "DescribeConfigs", "AlterConfigs",
	"AlterReplicaLogDirs", "DescribeLogDirs", "SaslAuthenticate", "CreatePartitions",
	"CreateDelegationToken", "RenewDelegationToken", "ExpireDelegationToken",
	"DescribeDelegationToken", "DeleteGroups", "ElectLeaders", "IncrementalAlterConfigs",
	"AlterPartitionReassignments", "ListPartitionReassignments", "OffsetDelete",
	"DescribeClientQuotas", "AlterClientQuotas", "DescribeUserScramCredentials",
	"AlterUserScramCredentials", "Vote", "BeginQuorumEpoch", "EndQuorumEpoch", "DescribeQuorum",
	"AlterPartition", "UpdateFeatures", "Envelope", "FetchSnapshot", "DescribeCluster",
	"DescribeProducers", "BrokerRegistration", "BrokerHeartbeat", "UnregisterBroker",
	"DescribeTransactions", "ListTransactions", "AllocateProducerIds", "ConsumerGroupHeartbeat",
	"ConsumerGroupDescribe", "ControllerRegistration", "GetTelemetrySubscriptions", "PushTelemetry",
	"AssignReplicasToDirs", "ListClientMetricsResources", "DescribeTopicPartitions",
}

// kafkaEveryRole are the APIs every role needs: version negotiation,
// metadata and authentication.
var kafkaEveryRole = []string{"ApiVersions", "Metadata", "SaslHandshake", "SaslAuthenticate"}

var kafkaRoles = map[string][]string{
	"produce": {"Produce", "InitProducerId", "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn",
		"TxnOffsetCommit", "FindCoordinator"},
	"consume": {"Fetch", "ListOffsets", "OffsetCommit", "OffsetFetch", "JoinGroup", "SyncGroup",
		"Heartbeat", "LeaveGroup", "FindCoordinator", "OffsetForLeaderEpoch", "ConsumerGroupHeartbeat"},
	"admin": {"CreateTopics", "DeleteTopics", "DeleteRecords", "CreatePartitions", "AlterConfigs",
		"IncrementalAlterConfigs", "DescribeConfigs", "CreateAcls", "DeleteAcls", "DescribeAcls",
		"DescribeGroups", "ListGroups", "DeleteGroups", "OffsetDelete", "ElectLeaders",
		"AlterPartitionReassignments", "ListPartitionReassignments", "DescribeLogDirs",
		"AlterReplicaLogDirs", "DescribeCluster", "DescribeProducers", "DescribeTransactions",
		"ListTransactions", "DescribeClientQuotas", "AlterClientQuotas",
		"DescribeUserScramCredentials", "AlterUserScramCredentials", "CreateDelegationToken",
		"RenewDelegationToken", "ExpireDelegationToken", "DescribeDelegationToken",
		"UpdateFeatures", "DescribeQuorum", "DescribeTopicPartitions", "FindCoordinator",
		"ListOffsets", "ConsumerGroupDescribe"},
}

// KafkaAPI returns Kafka's spelling of an API name given in any case
// ("PRODUCE" → "Produce"), and whether it is one.
func KafkaAPI(name string) (string, bool) {
	for _, a := range kafkaAPIs {
		if strings.EqualFold(a, name) {
			return a, true
		}
	}
	return "", false
}

// KafkaRoles lists the role names a KafkaMatch accepts, sorted.
func KafkaRoles() []string { return []string{"admin", "consume", "produce"} }

// KafkaRoleAPIs returns the API names a role allows, sorted: the role's own
// and those every role needs (ApiVersions, Metadata, SaslHandshake,
// SaslAuthenticate). Nil for an unknown role. The slice is new.
func KafkaRoleAPIs(role string) []string {
	own, ok := kafkaRoles[role]
	if !ok {
		return nil
	}
	out := append(slices.Clone(kafkaEveryRole), own...)
	slices.Sort(out)
	return slices.Compact(out)
}

// resourceless are, per protocol, upper-case verbs whose messages never name
// a resource (topic, table, collection, key), so that an L7Rule with no
// resource patterns cannot let them act on one. Kafka's Metadata is here
// although it may list topics: clients ask for all topics or none, and
// metadata names no data.
var resourceless = map[string][]string{
	"kafka": {"APIVERSIONS", "METADATA", "SASLHANDSHAKE", "SASLAUTHENTICATE", "FINDCOORDINATOR",
		"JOINGROUP", "SYNCGROUP", "HEARTBEAT", "LEAVEGROUP", "INITPRODUCERID", "ADDOFFSETSTOTXN",
		"ENDTXN", "DESCRIBEGROUPS", "LISTGROUPS", "DELETEGROUPS", "DESCRIBECLUSTER",
		"DESCRIBETRANSACTIONS", "LISTTRANSACTIONS", "DESCRIBECLIENTQUOTAS", "ALTERCLIENTQUOTAS",
		"DESCRIBEUSERSCRAMCREDENTIALS", "ALTERUSERSCRAMCREDENTIALS", "CREATEDELEGATIONTOKEN",
		"RENEWDELEGATIONTOKEN", "EXPIREDELEGATIONTOKEN", "DESCRIBEDELEGATIONTOKEN", "UPDATEFEATURES",
		"DESCRIBEQUORUM", "CONSUMERGROUPHEARTBEAT", "CONSUMERGROUPDESCRIBE",
		"GETTELEMETRYSUBSCRIPTIONS", "PUSHTELEMETRY", "LISTCLIENTMETRICSRESOURCES"},
	"sql": {"BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END", "ABORT", "USE", "SSL", "GSSENC", "CANCEL"},
	"memcached": {"VERSION", "STATS", "STAT", "QUIT", "QUITQ", "NOOP", "MN", "VERBOSITY", "FLUSH_ALL",
		"FLUSH", "FLUSHQ", "SHUTDOWN", "CACHE_MEMLIMIT", "LRU_CRAWLER", "LRU", "SLABS", "WATCH",
		"MISBEHAVE", "SASL_LIST_MECHS", "SASL_AUTH", "SASL_STEP", "EXTSTORE", "REFRESH_CERTS", "DEBUGTIME"},
	"mongodb": {"HELLO", "ISMASTER", "PING", "BUILDINFO", "SASLSTART", "SASLCONTINUE", "ENDSESSIONS",
		"LOGOUT", "GETNONCE", "AUTHENTICATE", "CONNECTIONSTATUS", "WHATSMYURI", "GETLASTERROR",
		"STARTSESSION", "COMMITTRANSACTION", "ABORTTRANSACTION", "REFRESHSESSIONS", "KILLSESSIONS",
		"LISTDATABASES", "LISTCOLLECTIONS", "DBSTATS", "SERVERSTATUS", "HOSTINFO", "GETPARAMETER",
		"DROPDATABASE", "GETCMDLINEOPTS"},
}

// Resourceless reports whether verb (any case) of a protocol's matcher
// ("kafka", "sql", "memcached", "mongodb") never names a resource.
func Resourceless(matcher, verb string) bool {
	return slices.Contains(resourceless[matcher], strings.ToUpper(verb))
}

// mongoCommands are MongoDB's spellings of its common commands.
var mongoCommands = []string{
	"abortTransaction", "aggregate", "authenticate", "buildInfo", "bulkWrite", "collMod",
	"collStats", "commitTransaction", "connectionStatus", "count", "create", "createIndexes",
	"createUser", "dbStats", "delete", "distinct", "drop", "dropDatabase", "dropIndexes",
	"endSessions", "explain", "find", "findAndModify", "getCmdLineOpts", "getLastError", "getMore",
	"getNonce", "getParameter", "hello", "hostInfo", "insert", "isMaster", "killCursors",
	"killSessions", "listCollections", "listDatabases", "listIndexes", "logout", "mapReduce",
	"ping", "refreshSessions", "renameCollection", "saslContinue", "saslStart", "serverStatus",
	"startSession", "update", "whatsmyuri",
}

// MongoCommand returns MongoDB's spelling of a command name given in any
// case ("ISMASTER" → "isMaster"); an unknown name given all in upper case is
// lower-cased, any other is returned as it is.
func MongoCommand(name string) string {
	for _, c := range mongoCommands {
		if strings.EqualFold(c, name) {
			return c
		}
	}
	if name == strings.ToUpper(name) {
		return strings.ToLower(name)
	}
	return name
}
