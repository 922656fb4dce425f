package kafka

// api describes one Kafka API key: its name as Apache Kafka spells it, the
// highest version this package knows (from Kafka's JSON message
// definitions, as franz-go's kmsg v1.15.1 carries them) and the first
// flexible version (KIP-482: compact encodings and tagged fields), -1 when
// no version is flexible.
type api struct {
	name       string
	maxVersion int16
	flexible   int16
}

// apis is indexed by API key. Names up to key 75 are those of
// controlplane/compile/vocab (which rules are written with).
var apis = [...]api{
	0:  {name: "Produce", maxVersion: 13, flexible: 9},
	1:  {name: "Fetch", maxVersion: 18, flexible: 12},
	2:  {name: "ListOffsets", maxVersion: 11, flexible: 6},
	3:  {name: "Metadata", maxVersion: 13, flexible: 9},
	4:  {name: "LeaderAndIsr", maxVersion: 7, flexible: 4},
	5:  {name: "StopReplica", maxVersion: 4, flexible: 2},
	6:  {name: "UpdateMetadata", maxVersion: 8, flexible: 6},
	7:  {name: "ControlledShutdown", maxVersion: 3, flexible: 3},
	8:  {name: "OffsetCommit", maxVersion: 10, flexible: 8},
	9:  {name: "OffsetFetch", maxVersion: 10, flexible: 6},
	10: {name: "FindCoordinator", maxVersion: 6, flexible: 3},
	11: {name: "JoinGroup", maxVersion: 9, flexible: 6},
	12: {name: "Heartbeat", maxVersion: 4, flexible: 4},
	13: {name: "LeaveGroup", maxVersion: 5, flexible: 4},
	14: {name: "SyncGroup", maxVersion: 5, flexible: 4},
	15: {name: "DescribeGroups", maxVersion: 6, flexible: 5},
	16: {name: "ListGroups", maxVersion: 5, flexible: 3},
	17: {name: "SaslHandshake", maxVersion: 1, flexible: -1},
	18: {name: "ApiVersions", maxVersion: 5, flexible: 3},
	19: {name: "CreateTopics", maxVersion: 7, flexible: 5},
	20: {name: "DeleteTopics", maxVersion: 6, flexible: 4},
	21: {name: "DeleteRecords", maxVersion: 2, flexible: 2},
	22: {name: "InitProducerId", maxVersion: 5, flexible: 2},
	23: {name: "OffsetForLeaderEpoch", maxVersion: 4, flexible: 4},
	24: {name: "AddPartitionsToTxn", maxVersion: 5, flexible: 3},
	25: {name: "AddOffsetsToTxn", maxVersion: 4, flexible: 3},
	26: {name: "EndTxn", maxVersion: 5, flexible: 3},
	27: {name: "WriteTxnMarkers", maxVersion: 2, flexible: 1},
	28: {name: "TxnOffsetCommit", maxVersion: 6, flexible: 3},
	29: {name: "DescribeAcls", maxVersion: 3, flexible: 2},
	30: {name: "CreateAcls", maxVersion: 3, flexible: 2},
	31: {name: "DeleteAcls", maxVersion: 3, flexible: 2},
	32: {name: "DescribeConfigs", maxVersion: 4, flexible: 4},
	33: {name: "AlterConfigs", maxVersion: 2, flexible: 2},
	34: {name: "AlterReplicaLogDirs", maxVersion: 2, flexible: 2},
	35: {name: "DescribeLogDirs", maxVersion: 5, flexible: 2},
	36: {name: "SaslAuthenticate", maxVersion: 2, flexible: 2},
	37: {name: "CreatePartitions", maxVersion: 3, flexible: 2},
	38: {name: "CreateDelegationToken", maxVersion: 3, flexible: 2},
	39: {name: "RenewDelegationToken", maxVersion: 2, flexible: 2},
	40: {name: "ExpireDelegationToken", maxVersion: 2, flexible: 2},
	41: {name: "DescribeDelegationToken", maxVersion: 3, flexible: 2},
	42: {name: "DeleteGroups", maxVersion: 3, flexible: 2},
	43: {name: "ElectLeaders", maxVersion: 2, flexible: 2},
	44: {name: "IncrementalAlterConfigs", maxVersion: 1, flexible: 1},
	45: {name: "AlterPartitionReassignments", maxVersion: 1, flexible: 0},
	46: {name: "ListPartitionReassignments", maxVersion: 0, flexible: 0},
	47: {name: "OffsetDelete", maxVersion: 0, flexible: -1},
	48: {name: "DescribeClientQuotas", maxVersion: 1, flexible: 1},
	49: {name: "AlterClientQuotas", maxVersion: 1, flexible: 1},
	50: {name: "DescribeUserScramCredentials", maxVersion: 0, flexible: 0},
	51: {name: "AlterUserScramCredentials", maxVersion: 0, flexible: 0},
	52: {name: "Vote", maxVersion: 2, flexible: 0},
	53: {name: "BeginQuorumEpoch", maxVersion: 1, flexible: 1},
	54: {name: "EndQuorumEpoch", maxVersion: 1, flexible: 1},
	55: {name: "DescribeQuorum", maxVersion: 2, flexible: 0},
	56: {name: "AlterPartition", maxVersion: 3, flexible: 0},
	57: {name: "UpdateFeatures", maxVersion: 2, flexible: 0},
	58: {name: "Envelope", maxVersion: 0, flexible: 0},
	59: {name: "FetchSnapshot", maxVersion: 1, flexible: 0},
	60: {name: "DescribeCluster", maxVersion: 2, flexible: 0},
	61: {name: "DescribeProducers", maxVersion: 0, flexible: 0},
	62: {name: "BrokerRegistration", maxVersion: 4, flexible: 0},
	63: {name: "BrokerHeartbeat", maxVersion: 2, flexible: 0},
	64: {name: "UnregisterBroker", maxVersion: 0, flexible: 0},
	65: {name: "DescribeTransactions", maxVersion: 0, flexible: 0},
	66: {name: "ListTransactions", maxVersion: 2, flexible: 0},
	67: {name: "AllocateProducerIds", maxVersion: 0, flexible: 0},
	68: {name: "ConsumerGroupHeartbeat", maxVersion: 1, flexible: 0},
	69: {name: "ConsumerGroupDescribe", maxVersion: 1, flexible: 0},
	70: {name: "ControllerRegistration", maxVersion: 0, flexible: 0},
	71: {name: "GetTelemetrySubscriptions", maxVersion: 0, flexible: 0},
	72: {name: "PushTelemetry", maxVersion: 0, flexible: 0},
	73: {name: "AssignReplicasToDirs", maxVersion: 0, flexible: 0},
	74: {name: "ListClientMetricsResources", maxVersion: 1, flexible: 0},
	75: {name: "DescribeTopicPartitions", maxVersion: 0, flexible: 0},
	76: {name: "ShareGroupHeartbeat", maxVersion: 1, flexible: 0},
	77: {name: "ShareGroupDescribe", maxVersion: 1, flexible: 0},
	78: {name: "ShareFetch", maxVersion: 2, flexible: 0},
	79: {name: "ShareAcknowledge", maxVersion: 2, flexible: 0},
	80: {name: "AddRaftVoter", maxVersion: 1, flexible: 0},
	81: {name: "RemoveRaftVoter", maxVersion: 0, flexible: 0},
	82: {name: "UpdateRaftVoter", maxVersion: 0, flexible: 0},
	83: {name: "InitializeShareGroupState", maxVersion: 0, flexible: 0},
	84: {name: "ReadShareGroupState", maxVersion: 0, flexible: 0},
	85: {name: "WriteShareGroupState", maxVersion: 1, flexible: 0},
	86: {name: "DeleteShareGroupState", maxVersion: 0, flexible: 0},
	87: {name: "ReadShareGroupStateSummary", maxVersion: 1, flexible: 0},
	88: {name: "StreamsGroupHeartbeat", maxVersion: 1, flexible: 0},
	89: {name: "StreamsGroupDescribe", maxVersion: 1, flexible: 0},
	90: {name: "DescribeShareGroupOffsets", maxVersion: 1, flexible: 0},
	91: {name: "AlterShareGroupOffsets", maxVersion: 0, flexible: 0},
	92: {name: "DeleteShareGroupOffsets", maxVersion: 0, flexible: 0},
	93: {name: "StreamsGroupTopologyDescriptionUpdate", maxVersion: 0, flexible: 0},
	94: {name: "UnregisterController", maxVersion: 0, flexible: 0},
}

// Well-known API keys.
const (
	keyProduce              = 0
	keyFetch                = 1
	keyListOffsets          = 2
	keyMetadata             = 3
	keyControlledShutdown   = 7
	keyOffsetCommit         = 8
	keyOffsetFetch          = 9
	keyFindCoordinator      = 10
	keyJoinGroup            = 11
	keyHeartbeat            = 12
	keyLeaveGroup           = 13
	keySyncGroup            = 14
	keyDescribeGroups       = 15
	keyListGroups           = 16
	keySaslHandshake        = 17
	keyApiVersions          = 18
	keyCreateTopics         = 19
	keyDeleteTopics         = 20
	keyDeleteRecords        = 21
	keyInitProducerID       = 22
	keyOffsetForLeaderEpoch = 23
	keyAddPartitionsToTxn   = 24
	keyAddOffsetsToTxn      = 25
	keyEndTxn               = 26
	keyTxnOffsetCommit      = 28
	keySaslAuthenticate     = 36
	keyDeleteGroups         = 42
	keyDescribeCluster      = 60
	keyConsumerGroupHB      = 68
)

// known reports whether key is an API key of the table.
func known(key int16) bool { return key >= 0 && int(key) < len(apis) && apis[key].name != "" }

// isFlexible reports whether version of API key uses compact encodings and
// tagged fields (request header v2, response header v1).
func isFlexible(key, version int16) bool {
	if !known(key) {
		return false
	}
	a := apis[key]
	return a.flexible >= 0 && version >= a.flexible
}
