package enforce

// Protocol names a port may declare. "tcp" means L4 only (no parser).
const (
	protoTCP   = "tcp"
	protoRedis = "redis"
)

// knownProtocols lists the protocol names Compile accepts: "tcp" and every
// name of protocols/all. Keep it in step with protocols/all.Protocols() (a
// test there, or in this package once protocols/all exists, checks it).
var knownProtocols = []string{protoTCP, protoRedis}

func knownProtocol(name string) bool {
	for _, k := range knownProtocols {
		if k == name {
			return true
		}
	}
	return false
}
