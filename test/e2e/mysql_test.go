package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

// The MySQL world: MariaDB on api:3306 (declared "mysql" in the workloads
// file) behind bulkhead-proxy, with database mysqlDB and user mysqlUser,
// who may do anything in it (so every denial below is bulkhead's); web runs
// sysbench's read-only OLTP workload and the mariadb client, ops prepares
// sysbench's table.
const (
	mysqlPort     = 3306
	mysqlDB       = "shop"
	mysqlUser     = "app"
	mysqlPassword = "app-secret"
)

// mysqlEnv is the MySQL world.
type mysqlEnv struct {
	*serverEnv
	// sock is the server's Unix socket, for the test's own look at the
	// data (as the database's root, not through the proxy).
	sock string
}

// newMySQLEnv builds lab n: a MariaDB data directory initialised into a
// temporary folder, the server listening on every address, the database
// and its user created over the Unix socket, and sysbench's table
// prepared from ops through the proxy in discover mode.
func newMySQLEnv(t *testing.T, ctx context.Context, n int) *mysqlEnv {
	t.Helper()
	needTools(t, "mariadbd", "mariadb-install-db", "mariadb", "sysbench")
	dir, err := os.MkdirTemp("", "bulkhead-e2e-mysql-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // after the lab is gone
	me := &mysqlEnv{sock: filepath.Join(dir, "mysqld.sock")}
	data := filepath.Join(dir, "data")
	start := func(ctx context.Context, h *lab.Host) (*lab.Proc, error) {
		if out, err := h.Run(ctx, "mariadb-install-db", "--no-defaults", "--datadir="+data, "--user=root",
			"--auth-root-authentication-method=socket", "--skip-test-db"); err != nil {
			return nil, fmt.Errorf("mariadb-install-db: %w\n%s", err, out)
		}
		return h.Start(ctx, "mariadbd", "--no-defaults", "--datadir="+data, "--user=root",
			"--bind-address=0.0.0.0", "--port="+strconv.Itoa(mysqlPort), "--socket="+me.sock,
			"--pid-file="+filepath.Join(dir, "mysqld.pid"), "--skip-name-resolve", "--skip-log-bin",
			"--innodb-buffer-pool-size=16M", "--max-connections=50")
	}
	me.serverEnv = newServerEnv(t, ctx, n, mysqlPort, v1alpha1.ProtocolMySQL, start)
	const hosts = "'198.18.%'"
	setup := "CREATE DATABASE " + mysqlDB + "; " +
		"CREATE USER '" + mysqlUser + "'@" + hosts + " IDENTIFIED BY '" + mysqlPassword + "'; " +
		"GRANT ALL ON " + mysqlDB + ".* TO '" + mysqlUser + "'@" + hosts + "; " +
		"CREATE USER '" + mysqlRawUser + "'@" + hosts + "; " +
		"GRANT ALL ON " + mysqlDB + ".* TO '" + mysqlRawUser + "'@" + hosts
	if out, err := me.local(ctx, setup); err != nil {
		t.Fatalf("create the database and its users: %v\n%s", err, out)
	}
	addWorkload(t, ctx, me.serverEnv, opsHost)
	if out, err := me.sysbench(ctx, opsHost, "prepare"); err != nil {
		t.Fatalf("sysbench prepare from ops: %v\n%s", err, out)
	}
	return me
}

// local runs SQL as the database's root over the Unix socket, not through
// the proxy, and returns its output (tab-separated, no headers).
func (me *mysqlEnv) local(ctx context.Context, sql string) (string, error) {
	out, err := me.Host(me.Server).Run(ctx, "mariadb", "--no-defaults", "--socket="+me.sock, "-u", "root", "-N", "-B", "-e", sql)
	return strings.TrimSpace(string(out)), err
}

// sysbench runs sysbench's oltp_read_only command (prepare, run) in host
// from against the server through the proxy; run lasts two seconds. A
// failed run's error carries its output.
func (me *mysqlEnv) sysbench(ctx context.Context, from, command string) (string, error) {
	args := []string{"oltp_read_only", "--db-driver=mysql", "--mysql-host=" + me.Host(me.Server).Addr().String(),
		"--mysql-port=" + strconv.Itoa(mysqlPort), "--mysql-user=" + mysqlUser, "--mysql-password=" + mysqlPassword,
		"--mysql-db=" + mysqlDB, "--tables=1", "--table-size=1000", "--threads=2", "--time=2", command}
	out, errOut, code, err := runClient(ctx, me.Host(from), "sysbench", args...)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit %d", code)
	}
	if err != nil {
		return out + errOut, fmt.Errorf("sysbench %s from %s: %w", command, from, err)
	}
	return out + errOut, nil
}

// sysbenchErrors is sysbench's count of failed queries it went on after
// (a query it does not ignore ends the run), and of reconnections.
var sysbenchErrors = regexp.MustCompile(`ignored errors:\s+(\d+)\s[^\n]*\n\s*reconnects:\s+(\d+)\s`)

// workload runs web's read-only OLTP load and checks that every query
// succeeded.
func (me *mysqlEnv) workload(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	out, err := me.sysbench(ctx, webHost, "run")
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, out)
	}
	if m := sysbenchErrors.FindStringSubmatch(out); m == nil || m[1] != "0" || m[2] != "0" {
		t.Fatalf("%s: sysbench reports errors:\n%s", what, out)
	}
}

// client runs the mariadb client in web with the statements of script,
// read from its standard input on one connection, going on after errors
// (--force; -e would stop at the first), and returns its output and
// standard error.
func (me *mysqlEnv) client(t *testing.T, ctx context.Context, script string) (string, string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := me.Host(webHost).Command(tctx, "mariadb", "--no-defaults", "-h", me.Host(me.Server).Addr().String(),
		"-P", strconv.Itoa(mysqlPort), "-u", mysqlUser, "-p"+mysqlPassword, "-D", mysqlDB, "-N", "-B", "--force")
	var o, e bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(script), &o, &e
	if err := cmd.Run(); err != nil && tctx.Err() != nil {
		t.Fatalf("mariadb: timed out\n%s", e.String())
	}
	return o.String(), e.String()
}

// mysqlWebLearned are the rules web's workload teaches: sysbench's
// transactions of prepared SELECTs on its table, in database mysqlDB.
func mysqlWebLearned() []v1alpha1.Rule {
	rule := func(verb string, tables ...string) v1alpha1.Rule {
		return v1alpha1.Rule{
			Name:   "from-web-mysql-3306-" + strings.ToLower(verb),
			Origin: v1alpha1.OriginLearned,
			Peers:  []v1alpha1.Peer{{Segment: webHost}},
			Ports:  []v1alpha1.PortProtocol{{Port: mysqlPort, Protocol: v1alpha1.ProtocolMySQL}},
			SQL:    &v1alpha1.SQLMatch{Verbs: []string{verb}, Tables: tables, Databases: []string{mysqlDB}},
		}
	}
	return []v1alpha1.Rule{rule("BEGIN"), rule("COMMIT"), rule("SELECT", "sbtest1")}
}

// mysqlDenied is the mariadb client's report of bulkhead's ERR packet for
// statement line n of a script.
func mysqlDenied(line int, verb, table string) string {
	return fmt.Sprintf("ERROR 1142 (42000) at line %d: bulkhead: %s on table '%s' denied by policy (l7_not_allowed)", line, verb, table)
}

// TestMySQL: in discover mode sysbench's read-only workload and a mariadb
// client session from web are learned as per-verb rules with their tables
// and database (ops's prepare as ops's own rules). In protect the workload
// runs unchanged; in one mariadb session DROP TABLE sbtest1 — also in mixed
// case, inside an executable comment, and after a string holding ';' in a
// multi-statement query (MULTI) — and DELETE get ERROR 1142 from bulkhead
// while the statements after them are answered, and the table is untouched
// (the server would have allowed all of it). On a raw connection a DROP
// sent one byte per segment and a DROP between two pipelined SELECTs get
// the ERR packet (sequence id 1) in their place. In monitor a DELETE runs
// and is reported.
func TestMySQL(t *testing.T) {
	ctx := testCtx(t)
	me := newMySQLEnv(t, ctx, 43)
	me.workload(t, ctx, "discover")
	if out, errOut := me.client(t, ctx, "SELECT id FROM sbtest1 WHERE id = 1;\n"); out != "1\n" || errOut != "" {
		t.Fatalf("discover: mariadb = %q, %q", out, errOut)
	}
	waitLearnedSQL(t, ctx, me.serverEnv, mysqlWebLearned(), []string{"CREATE", "INSERT"})

	setModeAndWait(t, ctx, me.Env, v1alpha1.ModeProtect)
	me.workload(t, ctx, "protect")
	out, errOut := me.client(t, ctx, `SELECT id FROM sbtest1 WHERE id = 1;
DROP TABLE sbtest1;
SELECT id FROM sbtest1 WHERE id = 2;
dRoP tAbLe sbtest1;
/*!40000 DROP TABLE sbtest1 */;
DELETE FROM sbtest1;
SELECT count(*) FROM sbtest1;
DELIMITER //
SELECT id FROM sbtest1 WHERE c = 'a;b'; DROP TABLE sbtest1 //
DELIMITER ;
SELECT id FROM sbtest1 WHERE id = 3;
`)
	if out != "1\n2\n1000\n3\n" {
		t.Errorf("protect: mariadb answers %q, want the three SELECTs' rows", out)
	}
	for _, want := range []string{mysqlDenied(2, "DROP", "sbtest1"), mysqlDenied(4, "DROP", "sbtest1"),
		mysqlDenied(5, "DROP", "sbtest1"), mysqlDenied(6, "DELETE", "sbtest1"), mysqlDenied(9, "MULTI", "sbtest1")} {
		if !strings.Contains(errOut, want) {
			t.Errorf("protect: mariadb does not report %q:\n%s", want, errOut)
		}
	}
	if got, err := me.local(ctx, "SELECT count(*) FROM "+mysqlDB+".sbtest1"); err != nil || got != "1000" {
		t.Errorf("sbtest1: %q rows, %v; want 1000", got, err)
	}
	t.Run("raw", func(t *testing.T) {
		// DROP sent one byte per segment, then pipelined commands with
		// the denied one in the middle: each answer in its place, ERR
		// with sequence id 1 as the server's own.
		c := me.dialMySQL(t, ctx)
		if err := c.sendBytewise(mysqlQuery("DROP TABLE sbtest1"), time.Millisecond); err != nil {
			t.Fatal(err)
		}
		want := "ERR 1142 (42000) seq 1: bulkhead: DROP on table 'sbtest1' denied by policy (l7_not_allowed)"
		if got, err := c.result(); err != nil || got != want {
			t.Errorf("DROP a byte at a time: %q, %v; want %q", got, err, want)
		}
		if err := c.send(bytes.Join([][]byte{mysqlQuery("SELECT id FROM sbtest1 WHERE id = 3"),
			mysqlQuery("DROP TABLE sbtest1"), mysqlQuery("SELECT id FROM sbtest1 WHERE id BETWEEN 4 AND 5")}, nil)); err != nil {
			t.Fatal(err)
		}
		for i, want := range []string{"3", want, "4,5"} {
			if got, err := c.result(); err != nil || got != want {
				t.Errorf("pipelined command %d: %q, %v; want %q", i+1, got, err, want)
			}
		}
	})
	web := me.Host(webHost).Addr().String()
	v := waitViolation(t, ctx, me.Env, "DROP denied", func(r cli.FlowRecord) bool {
		return r.SrcIP == web && r.Verb == "DROP" && r.Verdict == "deny"
	})
	if v.Resource != "sbtest1" || v.Aux != mysqlDB || v.Protocol != v1alpha1.ProtocolMySQL || v.Reason != "l7_not_allowed" || v.Mode != "protect" {
		t.Errorf("the DROP violation: %+v", v)
	}

	setModeAndWait(t, ctx, me.Env, v1alpha1.ModeMonitor)
	if out, errOut := me.client(t, ctx, "DELETE FROM sbtest1 WHERE id = 1000;\nSELECT count(*) FROM sbtest1;\n"); out != "999\n" || errOut != "" {
		t.Errorf("monitor: mariadb = %q, %q; want the DELETE run", out, errOut)
	}
	waitViolation(t, ctx, me.Env, "DELETE in monitor", func(r cli.FlowRecord) bool {
		return r.SrcIP == web && r.Verb == "DELETE" && r.Resource == "sbtest1" && r.Verdict == "violation" && r.Mode == "monitor"
	})
	me.serverAlive(t)
}

// mysqlConn is a raw MySQL connection from a lab host, for exchanges no
// program makes (a statement one byte per segment, pipelined commands),
// logged in as mysqlRawUser, who has no password.
type mysqlConn struct{ *rawConn }

const mysqlRawUser = "raw"

// Capabilities of mysqlConn's login: 4.1 protocol, secure connection,
// plugin authentication, a database in the handshake.
const mysqlRawCaps = 0x0001 | 0x0008 | 0x0200 | 0x2000 | 0x8000 | 0x80000

// dialMySQL connects from web and logs in to mysqlDB.
func (me *mysqlEnv) dialMySQL(t *testing.T, ctx context.Context) mysqlConn {
	t.Helper()
	c := mysqlConn{dialRaw(t, ctx, me.Host(webHost), me.ServerAddr())}
	if _, _, err := c.packet(); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	p := binary.LittleEndian.AppendUint32(nil, mysqlRawCaps)
	p = binary.LittleEndian.AppendUint32(p, 1<<24)
	p = append(p, 33) // utf8_general_ci
	p = append(p, make([]byte, 23)...)
	p = append(append(p, mysqlRawUser...), 0)
	p = append(p, 0) // no authentication data: no password
	p = append(append(p, mysqlDB...), 0)
	p = append(append(p, "mysql_native_password"...), 0)
	if err := c.send(mysqlPacket(1, p)); err != nil {
		t.Fatal(err)
	}
	if _, body, err := c.packet(); err != nil || len(body) == 0 || body[0] != 0 {
		t.Fatalf("login: %q %v", body, err)
	}
	return c
}

// mysqlPacket frames payload as one packet with sequence id seq.
func mysqlPacket(seq byte, payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

// mysqlQuery is a COM_QUERY packet.
func mysqlQuery(sql string) []byte { return mysqlPacket(0, append([]byte{0x03}, sql...)) }

// packet reads one packet: its sequence id and payload.
func (c mysqlConn) packet() (byte, []byte, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	var h [4]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(h[0]) | int(h[1])<<8 | int(h[2])<<16
	if n > maxReply {
		return 0, nil, fmt.Errorf("packet of %d bytes", n)
	}
	body := make([]byte, n)
	_, err := io.ReadFull(c.r, body)
	return h[3], body, err
}

// result reads the answer to a query: "OK", "ERR <code> (<state>) seq
// <sequence id>: <message>", or the first column of each row joined by
// ",". The connection speaks the protocol with EOF packets (no
// CLIENT_DEPRECATE_EOF).
func (c mysqlConn) result() (string, error) {
	seq, p, err := c.packet()
	switch {
	case err != nil:
		return "", err
	case len(p) == 0:
		return "", errors.New("empty packet")
	case p[0] == 0x00:
		return "OK", nil
	case p[0] == 0xff && len(p) >= 9 && p[3] == '#':
		return fmt.Sprintf("ERR %d (%s) seq %d: %s", binary.LittleEndian.Uint16(p[1:]), p[4:9], seq, p[9:]), nil
	}
	// Column definitions, EOF, rows, EOF.
	for {
		_, p, err := c.packet()
		if err != nil {
			return "", err
		}
		if len(p) > 0 && p[0] == 0xfe && len(p) < 9 {
			break
		}
	}
	var rows []string
	for {
		_, p, err := c.packet()
		if err != nil {
			return "", err
		}
		if len(p) > 0 && p[0] == 0xfe && len(p) < 9 {
			return strings.Join(rows, ","), nil
		}
		// The first column: a length-encoded string under 251 bytes.
		if len(p) == 0 || int(p[0]) >= 251 || int(p[0]) > len(p)-1 {
			return "", fmt.Errorf("row %q", p)
		}
		rows = append(rows, string(p[1:1+p[0]]))
	}
}
