// Package all lists every protocol Bulkhead's data plane can parse. It is a
// plain list, built on each call: there is no init() registration and no
// global map, so nothing can be added or changed behind the caller's back.
package all

import (
	"github.com/bulkhead-io/bulkhead/protocols/dns"
	"github.com/bulkhead-io/bulkhead/protocols/http1"
	"github.com/bulkhead-io/bulkhead/protocols/http2"
	"github.com/bulkhead-io/bulkhead/protocols/kafka"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/memcached"
	"github.com/bulkhead-io/bulkhead/protocols/mongodb"
	"github.com/bulkhead-io/bulkhead/protocols/mysql"
	"github.com/bulkhead-io/bulkhead/protocols/postgres"
	"github.com/bulkhead-io/bulkhead/protocols/redis"
	"github.com/bulkhead-io/bulkhead/protocols/tls"
)

// Protocols returns every protocol, in a fixed order (the order a sniffer
// tries them in). The slice is new on each call; the caller may keep or
// change it.
func Protocols() []l7.Protocol {
	return []l7.Protocol{
		redis.Protocol(),
		memcached.Protocol(),
		http2.Protocol(),
		http1.Protocol(),
		tls.Protocol(),
		postgres.Protocol(),
		mysql.Protocol(),
		kafka.Protocol(),
		mongodb.Protocol(),
		dns.Protocol(),
	}
}

// ByName returns the protocol whose Name is name ("redis"); names are
// lower case and compared exactly.
func ByName(name string) (l7.Protocol, bool) {
	for _, p := range Protocols() {
		if p.Name == name {
			return p, true
		}
	}
	return l7.Protocol{}, false
}
