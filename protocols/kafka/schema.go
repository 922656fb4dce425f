package kafka

// The bodies this package reads (requests naming topics, Metadata replies)
// and writes (deny replies) are described by small static schemas: lists of
// fields, each present in a range of versions, following Kafka's JSON
// message definitions. One interpreter walks a request or reply body
// (walk.go), another writes a deny reply (deny.go). Strings, byte strings
// and arrays use the compact encodings in flexible versions, where every
// struct (the body and each array element) ends with tagged fields.

// kind is what a field holds, and for captured fields what the walker does
// with it.
type kind uint8

const (
	// Plain values, read and skipped (requests) or written with their
	// default (replies).
	kI8 kind = iota
	kI16
	kI32
	kI64
	kBool
	kUUID
	kStr      // string
	kNStr     // nullable string
	kBytes    // bytes
	kNBytes   // nullable bytes
	kArr      // array of structs (sub)
	kNArr     // nullable array of structs (sub)
	kI32Arr   // array of int32
	kNullStru // a nullable struct written as absent (int8 -1)

	// Captured by the request walker.
	kTopics  // array of topic structs (sub): one topic per element
	kNTopics // nullable kTopics: null means every topic
	kName    // a topic's name
	kNName   // a topic's nullable name
	kID      // a topic's id (UUID)
	kPart    // a partition index (int32) of the current topic
	kParts   // array of partition indexes (int32) of the current topic
	kNames   // array of topic names (each a topic without partitions)
	kGroup   // a group id, coordinator key or transactional id (a 'G' record)
	kGroups  // array of kGroup strings
	kAcks    // Produce acks (int16)
	kSessID  // Fetch session id (int32)
	kSessEp  // Fetch session epoch (int32)
	kKeyType // FindCoordinator key type (int8)
	kTxnID   // nullable transactional id (InitProducerId)

	// Written by the deny builder.
	kErr      // int16: the API's deny error code
	kErrTop   // int16: 0, or FETCH_SESSION_ID_NOT_FOUND for an incremental fetch
	kErrEmpty // int16: GROUP_AUTHORIZATION_FAILED when no topic is in scope, else 0
	kMsg      // nullable string: "bulkhead: <reason>"
	kEmpty    // empty array
	kNull     // null array
	kRTopics  // array over the topics in scope (sub)
	kRParts   // array over the current topic's partitions (sub)
	kRGroups  // array over the 'G' records (sub)
	kRName    // the current topic's name
	kRNName   // the current topic's name, null when it has none
	kRID      // the current topic's id
	kRPart    // the current partition
	kRGroup   // the current 'G' record's string
	kAuthOps  // int32 authorized operations: INT32_MIN, "not requested"
)

// open is the upper version bound of a field that is present in every later
// version.
const open = 127

// field is one field of a schema, present in versions from..to.
type field struct {
	k        kind
	from, to int8
	def      int64   // value written by the deny builder for integers
	sub      []field // element fields of arrays
}

func (f *field) in(v int16) bool { return v >= int16(f.from) && v <= int16(f.to) }

// f is a field present in every version.
func f(k kind, sub ...field) field { return field{k: k, to: open, sub: sub} }

// fv is a field present in versions from..to.
func fv(k kind, from, to int8, sub ...field) field {
	return field{k: k, from: from, to: to, sub: sub}
}

// fd is an integer field written with def by the deny builder.
func fd(k kind, from, to int8, def int64) field {
	return field{k: k, from: from, to: to, def: def}
}

// Request bodies, by API key, for the versions 0..apis[key].maxVersion.
// A request whose API has a schema is framed whole (Produce's topic names
// and partitions sit between its record batches).
var requestSchemas = [...][]field{
	keyProduce: {
		fv(kNStr, 3, open), // transactional_id
		f(kAcks),
		f(kI32), // timeout_ms
		f(kTopics, fv(kName, 0, 12), fv(kID, 13, open),
			f(kArr, f(kPart), f(kNBytes))), // index, records
	},
	keyFetch: {
		fv(kI32, 0, 14), // replica_id
		f(kI32),         // max_wait_ms
		f(kI32),         // min_bytes
		fv(kI32, 3, open),
		fv(kI8, 4, open),
		fv(kSessID, 7, open),
		fv(kSessEp, 7, open),
		f(kTopics, fv(kName, 0, 12), fv(kID, 13, open),
			f(kArr, f(kPart), fv(kI32, 9, open), f(kI64), fv(kI32, 12, open), fv(kI64, 5, open), f(kI32))),
		fv(kArr, 7, open, fv(kStr, 7, 12), fv(kUUID, 13, open), f(kI32Arr)), // forgotten_topics_data
		fv(kStr, 11, open), // rack_id
	},
	keyListOffsets: {
		f(kI32), // replica_id
		fv(kI8, 2, open),
		f(kTopics, f(kName),
			f(kArr, f(kPart), fv(kI32, 4, open), f(kI64), fv(kI32, 0, 0))),
		fv(kI32, 10, open), // timeout_ms
	},
	keyMetadata: {
		fv(kTopics, 0, 0, f(kName)),
		fv(kNTopics, 1, open, fv(kID, 10, open), fv(kName, 0, 9), fv(kNName, 10, open)),
		fv(kBool, 4, open),
		fv(kBool, 8, 10),
		fv(kBool, 8, open),
	},
	keyOffsetCommit: {
		f(kStr), // group_id
		fv(kI32, 1, open),
		fv(kStr, 1, open),
		fv(kNStr, 7, open),
		fv(kI64, 2, 4),
		f(kTopics, fv(kName, 0, 9), fv(kID, 10, open),
			f(kArr, f(kPart), f(kI64), fv(kI64, 1, 1), fv(kI32, 6, open), f(kNStr))),
	},
	keyOffsetFetch: {
		fv(kStr, 0, 7), // group_id
		fv(kTopics, 0, 1, f(kName), f(kParts)),
		fv(kNTopics, 2, 7, f(kName), f(kParts)),
		fv(kArr, 8, open, f(kGroup), fv(kNStr, 9, open), fv(kI32, 9, open),
			f(kNTopics, fv(kName, 8, 9), fv(kID, 10, open), f(kParts))),
		fv(kBool, 7, open),
	},
	keyFindCoordinator: {
		fv(kGroup, 0, 3),
		fv(kKeyType, 1, open),
		fv(kGroups, 4, open),
	},
	keyDescribeGroups: {
		f(kGroups),
		fv(kBool, 3, open),
	},
	keyCreateTopics: {
		f(kTopics, f(kName), f(kI32), f(kI16),
			f(kArr, f(kI32), f(kI32Arr)), // assignments
			f(kArr, f(kStr), f(kNStr))),  // configs
		f(kI32),
		fv(kBool, 1, open),
	},
	keyDeleteTopics: {
		fv(kNames, 0, 5),
		fv(kTopics, 6, open, f(kNName), f(kID)),
		f(kI32),
	},
	keyDeleteRecords: {
		f(kTopics, f(kName), f(kArr, f(kPart), f(kI64))),
		f(kI32),
	},
	keyInitProducerID: {
		f(kTxnID),
		f(kI32),
		fv(kI64, 3, open),
		fv(kI16, 3, open),
	},
	keyOffsetForLeaderEpoch: {
		fv(kI32, 3, open), // replica_id
		f(kTopics, f(kName), f(kArr, f(kPart), fv(kI32, 2, open), f(kI32))),
	},
	keyAddPartitionsToTxn: {
		fv(kStr, 0, 3),
		fv(kI64, 0, 3),
		fv(kI16, 0, 3),
		fv(kTopics, 0, 3, f(kName), f(kParts)),
		fv(kArr, 4, open, f(kGroup), f(kI64), f(kI16), f(kBool),
			f(kTopics, f(kName), f(kParts))),
	},
	keyTxnOffsetCommit: {
		f(kStr), // transactional_id
		f(kStr), // group_id
		f(kI64),
		f(kI16),
		fv(kI32, 3, open),
		fv(kStr, 3, open),
		fv(kNStr, 3, open),
		f(kTopics, fv(kName, 0, 5), fv(kID, 6, open),
			f(kArr, f(kPart), f(kI64), fv(kI32, 2, open), f(kNStr))),
	},
	keyDeleteGroups: {
		f(kGroups),
	},
}

// requestSchema returns the body schema of a request, or nil when the
// package does not read that API's body (or not that version).
func requestSchema(key, version int16) []field {
	if key < 0 || int(key) >= len(requestSchemas) || version < 0 || version > apis[key].maxVersion {
		return nil
	}
	return requestSchemas[key]
}

// metadataReply is the Metadata response body from v10 on, the first
// version that carries topic ids; the walker learns id → name from it.
var metadataReply = []field{
	f(kI32), // throttle_time_ms
	f(kArr, f(kI32), f(kStr), f(kI32), f(kNStr)), // brokers
	f(kNStr), // cluster_id
	f(kI32),  // controller_id
	f(kTopics, f(kI16), fv(kName, 10, 11), fv(kNName, 12, open), f(kID), f(kBool),
		f(kArr, f(kI16), f(kI32), f(kI32), f(kI32), f(kI32Arr), f(kI32Arr), f(kI32Arr)),
		f(kI32)),
	fv(kI32, 8, 10), // cluster_authorized_operations
	fv(kI16, 13, open),
}

// minLearnVersion is the first Metadata version whose reply carries topic
// ids.
const minLearnVersion = 10

// Kafka error codes used in deny replies.
const (
	errTopicAuthorizationFailed         = 29
	errGroupAuthorizationFailed         = 30
	errClusterAuthorizationFailed       = 31
	errSaslAuthenticationFailed         = 58
	errFetchSessionIDNotFound           = 70
	errTransactionalIDAuthorizationFail = 53
)

// replySchema is the response body a deny reply writes for an API, with
// the error code it carries.
type replySchema struct {
	code   int16
	fields []field
}

// replySchemas are the deny replies, by API key, for versions
// 0..apis[key].maxVersion. APIs without one get no deny reply (see
// README.md).
var replySchemas = [...]replySchema{
	keyProduce: {errTopicAuthorizationFailed, []field{
		f(kRTopics, fv(kRName, 0, 12), fv(kRID, 13, open),
			f(kRParts, f(kRPart), f(kErr), fd(kI64, 0, open, -1), fd(kI64, 2, open, -1), fd(kI64, 5, open, -1),
				fv(kEmpty, 8, open), fv(kMsg, 8, open))),
		fv(kI32, 1, open),
	}},
	keyFetch: {errTopicAuthorizationFailed, []field{
		fv(kI32, 1, open),
		fv(kErrTop, 7, open),
		fv(kI32, 7, open), // session_id
		f(kRTopics, fv(kRName, 0, 12), fv(kRID, 13, open),
			f(kRParts, f(kRPart), f(kErr), fd(kI64, 0, open, -1), fd(kI64, 4, open, -1), fd(kI64, 5, open, -1),
				fv(kNull, 4, open), fd(kI32, 11, open, -1), f(kNBytes))),
	}},
	keyListOffsets: {errTopicAuthorizationFailed, []field{
		fv(kI32, 2, open),
		f(kRTopics, f(kRName),
			f(kRParts, f(kRPart), f(kErr), fv(kEmpty, 0, 0), fd(kI64, 1, open, -1), fd(kI64, 1, open, -1),
				fd(kI32, 4, open, -1))),
	}},
	keyMetadata: {errTopicAuthorizationFailed, []field{
		fv(kI32, 3, open),
		f(kEmpty),          // brokers
		fv(kNStr, 2, open), // cluster_id
		fd(kI32, 1, open, -1),
		f(kRTopics, f(kErr), fv(kRName, 0, 11), fv(kRNName, 12, open), fv(kRID, 10, open), fv(kBool, 1, open),
			f(kEmpty), fv(kAuthOps, 8, open)),
		fv(kAuthOps, 8, 10),
		fv(kI16, 13, open),
	}},
	keyOffsetCommit: {errTopicAuthorizationFailed, []field{
		fv(kI32, 3, open),
		f(kRTopics, fv(kRName, 0, 9), fv(kRID, 10, open), f(kRParts, f(kRPart), f(kErr))),
	}},
	keyOffsetFetch: {errTopicAuthorizationFailed, []field{
		fv(kI32, 3, open),
		fv(kRTopics, 0, 7, f(kRName),
			f(kRParts, f(kRPart), fd(kI64, 0, open, -1), fd(kI32, 5, open, -1), f(kNStr), f(kErr))),
		fv(kErrEmpty, 2, 7),
		fv(kRGroups, 8, open, f(kRGroup),
			f(kRTopics, fv(kRName, 8, 9), fv(kRID, 10, open),
				f(kRParts, f(kRPart), fd(kI64, 0, open, -1), fd(kI32, 0, open, -1), f(kNStr), f(kErr))),
			f(kErrEmpty)),
	}},
	keyFindCoordinator: {errGroupAuthorizationFailed, []field{
		fv(kI32, 1, open),
		fv(kErr, 0, 3),
		fv(kMsg, 1, 3),
		fd(kI32, 0, 3, -1),
		fv(kStr, 0, 3),
		fd(kI32, 0, 3, -1),
		fv(kRGroups, 4, open, f(kRGroup), fd(kI32, 0, open, -1), f(kStr), fd(kI32, 0, open, -1), f(kErr), f(kMsg)),
	}},
	keyJoinGroup: {errGroupAuthorizationFailed, []field{
		fv(kI32, 2, open),
		f(kErr),
		fd(kI32, 0, open, -1), // generation_id
		fv(kNStr, 7, open),    // protocol_type
		fv(kStr, 0, 6),        // protocol_name
		fv(kNStr, 7, open),
		f(kStr), // leader
		fv(kBool, 9, open),
		f(kStr),   // member_id
		f(kEmpty), // members
	}},
	keyHeartbeat: {errGroupAuthorizationFailed, []field{
		fv(kI32, 1, open),
		f(kErr),
	}},
	keyLeaveGroup: {errGroupAuthorizationFailed, []field{
		fv(kI32, 1, open),
		f(kErr),
		fv(kEmpty, 3, open),
	}},
	keySyncGroup: {errGroupAuthorizationFailed, []field{
		fv(kI32, 1, open),
		f(kErr),
		fv(kNStr, 5, open),
		fv(kNStr, 5, open),
		f(kBytes),
	}},
	keyDescribeGroups: {errGroupAuthorizationFailed, []field{
		fv(kI32, 1, open),
		f(kRGroups, f(kErr), fv(kMsg, 6, open), f(kRGroup), f(kStr), f(kStr), f(kStr), f(kEmpty),
			fv(kAuthOps, 3, open)),
	}},
	keyListGroups: {errClusterAuthorizationFailed, []field{
		fv(kI32, 1, open),
		f(kErr),
		f(kEmpty),
	}},
	keySaslHandshake: {errClusterAuthorizationFailed, []field{
		f(kErr),
		f(kEmpty),
	}},
	keyApiVersions: {errClusterAuthorizationFailed, []field{
		f(kErr),
		f(kEmpty),
		fv(kI32, 1, open),
	}},
	keyCreateTopics: {errTopicAuthorizationFailed, []field{
		fv(kI32, 2, open),
		f(kRTopics, f(kRName), fv(kUUID, 7, open), f(kErr), fv(kMsg, 1, open), fd(kI32, 5, open, -1),
			fd(kI16, 5, open, -1), fv(kNull, 5, open)),
	}},
	keyDeleteTopics: {errTopicAuthorizationFailed, []field{
		fv(kI32, 1, open),
		f(kRTopics, fv(kRName, 0, 5), fv(kRNName, 6, open), fv(kRID, 6, open), f(kErr), fv(kMsg, 5, open)),
	}},
	keyDeleteRecords: {errTopicAuthorizationFailed, []field{
		f(kI32),
		f(kRTopics, f(kRName), f(kRParts, f(kRPart), fd(kI64, 0, open, -1), f(kErr))),
	}},
	keyInitProducerID: {errClusterAuthorizationFailed, []field{
		f(kI32),
		f(kErr),
		fd(kI64, 0, open, -1),
		fd(kI16, 0, open, -1),
	}},
	keyOffsetForLeaderEpoch: {errTopicAuthorizationFailed, []field{
		fv(kI32, 2, open),
		f(kRTopics, f(kRName), f(kRParts, f(kErr), f(kRPart), fd(kI32, 1, open, -1), fd(kI64, 0, open, -1))),
	}},
	keyAddPartitionsToTxn: {errTopicAuthorizationFailed, []field{
		f(kI32),
		fv(kI16, 4, open),
		fv(kRGroups, 4, open, f(kRGroup), f(kRTopics, f(kRName), f(kRParts, f(kRPart), f(kErr)))),
		fv(kRTopics, 0, 3, f(kRName), f(kRParts, f(kRPart), f(kErr))),
	}},
	keyAddOffsetsToTxn: {errTransactionalIDAuthorizationFail, []field{
		f(kI32),
		f(kErr),
	}},
	keyEndTxn: {errTransactionalIDAuthorizationFail, []field{
		f(kI32),
		f(kErr),
		fd(kI64, 5, open, -1),
		fd(kI16, 5, open, -1),
	}},
	keyTxnOffsetCommit: {errTopicAuthorizationFailed, []field{
		f(kI32),
		f(kRTopics, fv(kRName, 0, 5), fv(kRID, 6, open), f(kRParts, f(kRPart), f(kErr))),
	}},
	keySaslAuthenticate: {errSaslAuthenticationFailed, []field{
		f(kErr),
		f(kMsg),
		f(kBytes),
		fv(kI64, 1, open),
	}},
	keyDeleteGroups: {errGroupAuthorizationFailed, []field{
		f(kI32),
		f(kRGroups, f(kRGroup), f(kErr), fv(kMsg, 3, open)),
	}},
	keyDescribeCluster: {errClusterAuthorizationFailed, []field{
		f(kI32),
		f(kErr),
		f(kMsg),
		fd(kI8, 1, open, 1), // endpoint_type: brokers
		f(kStr),             // cluster_id
		fd(kI32, 0, open, -1),
		f(kEmpty),
		f(kAuthOps),
	}},
	keyConsumerGroupHB: {errGroupAuthorizationFailed, []field{
		f(kI32),
		f(kErr),
		f(kMsg),
		f(kNStr),
		fd(kI32, 0, open, -1),
		f(kI32),
		f(kNullStru),
	}},
}

// replySchemaFor returns the deny reply of an API version, or nil.
func replySchemaFor(key, version int16) *replySchema {
	if key < 0 || int(key) >= len(replySchemas) || version < 0 || version > apis[key].maxVersion {
		return nil
	}
	if rs := &replySchemas[key]; rs.fields != nil {
		return rs
	}
	return nil
}
