package sqlverb

import "strings"

// kw identifies the keywords the scanner reacts to. The constants are in
// alphabetical order of their names, which kwNames lists in the same order
// so that keyword can search it.
type kw uint8

const (
	kwNone kw = iota
	kwALL
	kwALTER
	kwANALYSE
	kwANALYZE
	kwAS
	kwBY
	kwCALL
	kwCOLUMN
	kwCONCURRENTLY
	kwCONSTRAINT
	kwCOPY
	kwCREATE
	kwDATA
	kwDATABASE
	kwDECLARE
	kwDELAYED
	kwDELETE
	kwDESC
	kwDESCRIBE
	kwDISTINCT
	kwDO
	kwDROP
	kwDUAL
	kwDUMPFILE
	kwEVENT
	kwEXCEPT
	kwEXECUTE
	kwEXISTS
	kwEXPLAIN
	kwEXTENDED
	kwEXTENSION
	kwFALSE
	kwFETCH
	kwFLUSH
	kwFOR
	kwFORMAT
	kwFROM
	kwFUNCTION
	kwGRANT
	kwGROUP
	kwHANDLER
	kwHAVING
	kwHIGH_PRIORITY
	kwIF
	kwIGNORE
	kwIN
	kwINDEX
	kwINFILE
	kwINSERT
	kwINTERSECT
	kwINTO
	kwJOIN
	kwKEY
	kwLATERAL
	kwLIKE
	kwLIMIT
	kwLOAD
	kwLOCAL
	kwLOCK
	kwLOW_PRIORITY
	kwMATERIALIZED
	kwMERGE
	kwMINUS
	kwMOVE
	kwNO
	kwNOT
	kwOFF
	kwOFFSET
	kwON
	kwONLY
	kwORDER
	kwORDINALITY
	kwOUTFILE
	kwPARTITION
	kwPARTITIONS
	kwPREPARE
	kwPROCEDURE
	kwPROGRAM
	kwQUALIFY
	kwQUICK
	kwRECURSIVE
	kwREFERENCES
	kwRENAME
	kwREPLACE
	kwRETURNING
	kwREVOKE
	kwSCHEMA
	kwSELECT
	kwSEQUENCE
	kwSET
	kwSHARE
	kwSHOW
	kwSTDIN
	kwSTDOUT
	kwSTRAIGHT_JOIN
	kwTABLE
	kwTABLES
	kwTO
	kwTRIGGER
	kwTRUNCATE
	kwTYPE
	kwUNION
	kwUPDATE
	kwUSE
	kwUSING
	kwVALUE
	kwVALUES
	kwVERBOSE
	kwVIEW
	kwWHERE
	kwWINDOW
	kwWITH
	kwXML
	kwCount
)

var kwNames = [kwCount]string{
	"", "ALL", "ALTER", "ANALYSE", "ANALYZE", "AS", "BY", "CALL", "COLUMN",
	"CONCURRENTLY", "CONSTRAINT", "COPY", "CREATE", "DATA", "DATABASE",
	"DECLARE", "DELAYED", "DELETE", "DESC", "DESCRIBE", "DISTINCT", "DO",
	"DROP", "DUAL", "DUMPFILE", "EVENT", "EXCEPT", "EXECUTE", "EXISTS",
	"EXPLAIN", "EXTENDED", "EXTENSION", "FALSE", "FETCH", "FLUSH", "FOR",
	"FORMAT", "FROM", "FUNCTION", "GRANT", "GROUP", "HANDLER", "HAVING",
	"HIGH_PRIORITY", "IF", "IGNORE", "IN", "INDEX", "INFILE", "INSERT",
	"INTERSECT", "INTO", "JOIN", "KEY", "LATERAL", "LIKE", "LIMIT", "LOAD",
	"LOCAL", "LOCK", "LOW_PRIORITY", "MATERIALIZED", "MERGE", "MINUS", "MOVE",
	"NO", "NOT", "OFF", "OFFSET", "ON", "ONLY", "ORDER", "ORDINALITY",
	"OUTFILE", "PARTITION", "PARTITIONS", "PREPARE", "PROCEDURE", "PROGRAM",
	"QUALIFY", "QUICK", "RECURSIVE", "REFERENCES", "RENAME", "REPLACE",
	"RETURNING", "REVOKE", "SCHEMA", "SELECT", "SEQUENCE", "SET", "SHARE",
	"SHOW", "STDIN", "STDOUT", "STRAIGHT_JOIN", "TABLE", "TABLES", "TO",
	"TRIGGER", "TRUNCATE", "TYPE", "UNION", "UPDATE", "USE", "USING", "VALUE",
	"VALUES", "VERBOSE", "VIEW", "WHERE", "WINDOW", "WITH", "XML",
}

// maxKeyword is the length of the longest keyword.
const maxKeyword = 13

// keyword returns the keyword w spells in any case, or kwNone.
func keyword(w []byte) kw { return keywordAt(w, 0, len(w)) }

// keywordAt returns the keyword s[i:j] spells in any case, or kwNone. It
// looks only at the few keywords of the word's length and first letter
// (kwBuckets), so a word that is no keyword, the common case, usually
// costs one table read; a candidate is compared as two case-folded 64-bit
// words, loaded from s at once when s has 8 bytes from i.
func keywordAt(s []byte, i, j int) kw {
	n := j - i
	if n < 2 || n > maxKeyword {
		return kwNone
	}
	c := s[i] | 0x20
	if c < 'a' || c > 'z' {
		return kwNone
	}
	b := &kwBuckets[n][c-'a']
	if b[0] == kwNone {
		return kwNone
	}
	var lo, hi uint64
	if len(s)-i >= 8 {
		lo = le64(s[i:]) | fold8
		if n < 8 {
			lo &= 1<<(8*uint(n)) - 1
		} else if n > 8 {
			hi = partial64(s[i+8 : j])
		}
	} else {
		lo, hi = foldKey(s[i:j])
	}
	for _, k := range b {
		if k == kwNone {
			return kwNone
		}
		if kwKeys[k] == [2]uint64{lo, hi} {
			if kwUnderscore[k] && !underscores(s[i:j], kwNames[k]) {
				return kwNone // 0x7f where the name has '_'
			}
			return k
		}
	}
	return kwNone
}

// underscores reports whether w has '_' wherever name has.
func underscores(w []byte, name string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] == '_' && w[i] != '_' {
			return false
		}
	}
	return true
}

// Folding a byte with |0x20 maps an ASCII letter to its lower case and '_'
// to 0x7f. For the bytes a keyword is made of (letters and '_') it maps
// another byte to the same value only for the other case of a letter and
// for 0x7f standing for '_' (no word byte; keyword checks it anyway), so
// comparing folded words is comparing ASCII-case-insensitively.
const fold8 = 0x2020202020202020

// foldKey returns the bytes of w (at most 16) folded with |0x20 and packed
// little-endian into two words, zero past len(w).
func foldKey(w []byte) (lo, hi uint64) {
	if len(w) > 8 {
		return le64(w[:8]) | fold8, partial64(w[8:])
	}
	return partial64(w), 0
}

// partial64 packs w (at most 8 bytes) folded with |0x20, zero past len(w).
func partial64(w []byte) uint64 {
	var x uint64
	for i := len(w) - 1; i >= 0; i-- {
		x = x<<8 | uint64(w[i]|0x20)
	}
	return x
}

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// kwKeys holds each keyword name as foldKey returns it; kwUnderscore
// marks the names with a '_'.
var kwKeys, kwUnderscore = func() (t [kwCount][2]uint64, u [kwCount]bool) {
	for k := kw(1); k < kwCount; k++ {
		lo, hi := foldKey([]byte(kwNames[k]))
		t[k] = [2]uint64{lo, hi}
		u[k] = strings.IndexByte(kwNames[k], '_') >= 0
	}
	return t, u
}()

// kwBucket lists the keywords of one length and first letter, ended by
// kwNone when fewer than its size (at most 4 share both today).
type kwBucket [4]kw

// kwBuckets indexes kwNames by length and first letter. A keyword that
// did not fit its bucket would never be found; TestKeyword checks that
// every keyword is.
var kwBuckets = func() (t [maxKeyword + 1][26]kwBucket) {
	for k := kw(1); k < kwCount; k++ {
		n := kwNames[k]
		b := &t[len(n)][n[0]-'A']
		for i := range b {
			if b[i] == kwNone {
				b[i] = k
				break
			}
		}
	}
	return t
}()

// isStmtKeyword: a keyword that starts a query where a parenthesis opens
// (a subquery, a CTE body, a derived table).
func isStmtKeyword(k kw) bool {
	switch k {
	case kwSELECT, kwVALUES, kwTABLE, kwWITH, kwINSERT, kwUPDATE, kwDELETE, kwMERGE, kwREPLACE:
		return true
	}
	return false
}

// isDML: a statement that changes data.
func isDML(k kw) bool {
	switch k {
	case kwINSERT, kwUPDATE, kwDELETE, kwMERGE, kwREPLACE:
		return true
	}
	return false
}

// isObjectType: what CREATE, DROP and ALTER name after their modifiers.
func isObjectType(k kw) bool {
	switch k {
	case kwTABLE, kwVIEW, kwDATABASE, kwSCHEMA, kwINDEX, kwPROCEDURE, kwFUNCTION,
		kwTRIGGER, kwEVENT, kwSEQUENCE, kwTYPE, kwEXTENSION:
		return true
	}
	return false
}

// isExplainable: what EXPLAIN, DESCRIBE and DESC can explain.
func isExplainable(k kw) bool {
	switch k {
	case kwSELECT, kwINSERT, kwUPDATE, kwDELETE, kwREPLACE, kwWITH, kwTABLE, kwVALUES,
		kwMERGE, kwCREATE, kwEXECUTE, kwDECLARE:
		return true
	}
	return false
}

// endsTableList: a clause keyword after which a comma no longer
// introduces a table. Expression keywords (IN, AND, LIKE…) are not in it:
// MySQL accepts "FROM a JOIN b ON a.x IN (1), c".
func endsTableList(k kw) bool {
	switch k {
	case kwWHERE, kwSET, kwVALUES, kwVALUE, kwSELECT, kwGROUP, kwHAVING, kwORDER, kwLIMIT,
		kwOFFSET, kwFETCH, kwWINDOW, kwUNION, kwEXCEPT, kwINTERSECT, kwMINUS, kwINTO,
		kwLOCK, kwPROCEDURE, kwRETURNING, kwQUALIFY, kwDO, kwTO, kwFROM:
		return true
	}
	return false
}
