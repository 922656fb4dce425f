// Command kfakeserver runs franz-go's kfake Kafka broker for the end-to-end
// tests (no Kafka broker is packaged here): one broker listening on
// -listen, advertising -advertise in its metadata so that clients come
// back to the address they dialled (the server's lab address, behind
// bulkhead-proxy's redirect), with the topics of -topics seeded. It runs
// until SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

// advertised is a listener whose Addr is the address kfake advertises.
type advertised struct {
	net.Listener
	addr net.Addr
}

func (l advertised) Addr() net.Addr { return l.addr }

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("kfakeserver", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	listen := flag.String("listen", "0.0.0.0:9092", "address to listen on")
	advertise := flag.String("advertise", "", "host:port the broker advertises (required)")
	topics := flag.String("topics", "orders", "comma-separated topics to create")
	partitions := flag.Int("partitions", 1, "partitions per topic")
	flag.Parse()
	if *advertise == "" {
		return errors.New("-advertise is required")
	}
	adv, err := net.ResolveTCPAddr("tcp", *advertise)
	if err != nil {
		return fmt.Errorf("-advertise %q: %w", *advertise, err)
	}
	if *partitions < 1 || *partitions > 1000 {
		return fmt.Errorf("-partitions %d: want 1-1000", *partitions)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(int32(*partitions), strings.Split(*topics, ",")...),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			ln, err := net.Listen(network, *listen)
			if err != nil {
				return nil, err
			}
			return advertised{ln, adv}, nil
		}))
	if err != nil {
		return fmt.Errorf("start kfake: %w", err)
	}
	log.Info("kfake broker up", "listen", *listen, "advertise", adv.String(), "topics", *topics)
	<-ctx.Done()
	c.Close()
	log.Info("kfake broker stopped")
	return nil
}
