package mysql

// The wire vocabulary of the MySQL client/server protocol (MariaDB's
// additions included): packet framing, commands, capability and status
// flags, and length-encoded integers.

// Packets: a 3-byte little-endian payload length and a sequence id. A
// payload of MaxPacket bytes is continued by the next packet.
const (
	headerLen = 4
	// MaxPacket is the largest payload of one packet (16 MiB - 1); a
	// message of that length or more continues in further packets.
	MaxPacket = 1<<24 - 1
)

// Commands (the first payload byte of a client message).
const (
	comSleep            = 0x00
	comQuit             = 0x01
	comInitDB           = 0x02
	comQuery            = 0x03
	comFieldList        = 0x04
	comCreateDB         = 0x05
	comDropDB           = 0x06
	comRefresh          = 0x07
	comShutdown         = 0x08
	comStatistics       = 0x09
	comProcessInfo      = 0x0a
	comConnect          = 0x0b
	comProcessKill      = 0x0c
	comDebug            = 0x0d
	comPing             = 0x0e
	comTime             = 0x0f
	comDelayedInsert    = 0x10
	comChangeUser       = 0x11
	comBinlogDump       = 0x12
	comTableDump        = 0x13
	comConnectOut       = 0x14
	comRegisterSlave    = 0x15
	comStmtPrepare      = 0x16
	comStmtExecute      = 0x17
	comStmtSendLongData = 0x18
	comStmtClose        = 0x19
	comStmtReset        = 0x1a
	comSetOption        = 0x1b
	comStmtFetch        = 0x1c
	comDaemon           = 0x1d
	comBinlogDumpGTID   = 0x1e
	comResetConnection  = 0x1f
	comClone            = 0x20
	comSubscribeGroup   = 0x21
	comStmtBulkExecute  = 0xfa // MariaDB
	comMulti            = 0xfe // MariaDB (10.2-10.5)
)

// commandNames are the frame verbs of the commands that carry no SQL: the
// command's name without "COM_".
var commandNames = [...]string{
	comSleep:            "SLEEP",
	comQuit:             "QUIT",
	comInitDB:           "USE",
	comQuery:            "QUERY",
	comFieldList:        "FIELD_LIST",
	comCreateDB:         "CREATE_DB",
	comDropDB:           "DROP_DB",
	comRefresh:          "REFRESH",
	comShutdown:         "SHUTDOWN",
	comStatistics:       "STATISTICS",
	comProcessInfo:      "PROCESS_INFO",
	comConnect:          "CONNECT",
	comProcessKill:      "PROCESS_KILL",
	comDebug:            "DEBUG",
	comPing:             "PING",
	comTime:             "TIME",
	comDelayedInsert:    "DELAYED_INSERT",
	comChangeUser:       "CHANGE_USER",
	comBinlogDump:       "BINLOG_DUMP",
	comTableDump:        "TABLE_DUMP",
	comConnectOut:       "CONNECT_OUT",
	comRegisterSlave:    "REGISTER_SLAVE",
	comStmtPrepare:      "STMT_PREPARE",
	comStmtExecute:      "EXECUTE",
	comStmtSendLongData: "STMT_SEND_LONG_DATA",
	comStmtClose:        "STMT_CLOSE",
	comStmtReset:        "STMT_RESET",
	comSetOption:        "SET_OPTION",
	comStmtFetch:        "STMT_FETCH",
	comDaemon:           "DAEMON",
	comBinlogDumpGTID:   "BINLOG_DUMP_GTID",
	comResetConnection:  "RESET_CONNECTION",
	comClone:            "CLONE",
	comSubscribeGroup:   "SUBSCRIBE_GROUP_REPLICATION_STREAM",
}

// commandName returns the verb of a command without SQL.
func commandName(cmd byte) string {
	switch {
	case int(cmd) < len(commandNames) && commandNames[cmd] != "":
		return commandNames[cmd]
	case cmd == comStmtBulkExecute:
		return "STMT_BULK_EXECUTE"
	case cmd == comMulti:
		return "MULTI_COMMAND"
	}
	return "UNKNOWN_COMMAND"
}

// Capability flags.
const (
	capMySQL            = 1 << 0 // MariaDB: clear when the extended capabilities are in use
	capConnectWithDB    = 1 << 3
	capCompress         = 1 << 5
	capLocalFiles       = 1 << 7
	capProtocol41       = 1 << 9
	capSSL              = 1 << 11
	capSecureConnection = 1 << 15
	capMultiStatements  = 1 << 16
	capPluginAuth       = 1 << 19
	capConnectAttrs     = 1 << 20
	capPluginAuthLenenc = 1 << 21
	capSessionTrack     = 1 << 23
	capDeprecateEOF     = 1 << 24
	capOptionalMetadata = 1 << 25 // MySQL 8: CLIENT_OPTIONAL_RESULTSET_METADATA
	capZstd             = 1 << 26 // MySQL 8: CLIENT_ZSTD_COMPRESSION_ALGORITHM
	capQueryAttributes  = 1 << 27 // MySQL 8
)

// MariaDB extended capabilities (the last four bytes of the handshake
// filler, used when capMySQL is clear).
const (
	extProgress      = 1 << 0
	extCacheMetadata = 1 << 4
)

// Server status flags.
const (
	statusCursorExists       = 0x0040
	statusMoreResults        = 0x0008
	statusSessionStateChange = 0x4000
)

// Session state change types (OK packets with CLIENT_SESSION_TRACK).
const sessionTrackSchema = 1

// Reply packet markers.
const (
	markOK     = 0x00
	markInfile = 0xfb
	markEOF    = 0xfe
	markERR    = 0xff
)

// header decodes a packet header.
func header(b []byte) (length int, seq byte) {
	return int(b[0]) | int(b[1])<<8 | int(b[2])<<16, b[3]
}

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// lenenc decodes a length-encoded integer at the front of b; n is its size
// in bytes, 0 when b is too short or the first byte is no integer (0xfb is
// NULL in a row, 0xff an error).
func lenenc(b []byte) (v uint64, n int) {
	if len(b) == 0 {
		return 0, 0
	}
	switch c := b[0]; {
	case c < 0xfb:
		return uint64(c), 1
	case c == 0xfc:
		if len(b) < 3 {
			return 0, 0
		}
		return uint64(le16(b[1:])), 3
	case c == 0xfd:
		if len(b) < 4 {
			return 0, 0
		}
		return uint64(b[1]) | uint64(b[2])<<8 | uint64(b[3])<<16, 4
	case c == 0xfe:
		if len(b) < 9 {
			return 0, 0
		}
		return uint64(le32(b[1:])) | uint64(le32(b[5:]))<<32, 9
	}
	return 0, 0
}

// lenencString decodes a length-encoded string at the front of b; n is
// the bytes it takes, 0 when it does not fit in b.
func lenencString(b []byte) (s []byte, n int) {
	v, k := lenenc(b)
	if k == 0 || v > uint64(len(b)-k) {
		return nil, 0
	}
	return b[k : k+int(v)], k + int(v)
}

// cstring returns the NUL-terminated string at the front of b and the
// bytes it takes with its NUL; n is 0 when there is no NUL.
func cstring(b []byte) (s []byte, n int) {
	for i, c := range b {
		if c == 0 {
			return b[:i], i + 1
		}
	}
	return nil, 0
}
