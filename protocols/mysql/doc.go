// Package mysql decodes the MySQL client/server protocol (MySQL 5.7 and 8,
// MariaDB 10 and 11) for Bulkhead's data plane, following the contract of
// protocols/l7.
//
// The protocol is server-first: the greeting arrives in the reply direction
// and Sniff recognises it. The client's handshake response and the
// authentication exchange are skipped (OpSkip); the parser keeps the
// negotiated capabilities and the database the client connects to. An SSL
// request or a compressed session is framed once (Verb "SSL" or
// "COMPRESS") and then passed through (OpPass) in both directions.
//
// In the command phase every command is one frame. COM_QUERY and
// COM_STMT_PREPARE are judged on their statement, lexed by protocols/sqlverb
// (Verb, Sub, the tables as resources); the verb and tables of a prepared
// statement are kept per statement id, so that COM_STMT_EXECUTE carries
// them too. COM_INIT_DB is a USE of its database; other commands carry
// their name. Aux is the current database. Parameter data, LOCAL INFILE
// file contents and authentication data are streamed as OpSkip.
//
// In the reply direction the parser follows each command's reply: one
// final frame per command (OK, ERR, the end of the last result set),
// Partial frames between the results of a multi-result reply and for a
// LOCAL INFILE request, and column definitions and rows streamed as OpSkip
// without ever being held whole. The parser implements l7.DenyObserver: a
// command the proxy answers itself is not waited for.
//
// Deny builds the ERR packet that answers a denied command. README.md
// lists the wire format, the fields extracted, the limits and the gaps.
package mysql
