package sqlverb

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

// keyword returns the keyword w spells in any case, or kwNone. It looks
// only at the few keywords of w's length and first letter (kwBuckets), so
// a word that is no keyword, the common case, usually costs one table
// read.
func keyword(w []byte) kw {
	if len(w) < 2 || len(w) > maxKeyword {
		return kwNone
	}
	c := upper[w[0]]
	if c < 'A' || c > 'Z' {
		return kwNone
	}
	for _, k := range &kwBuckets[len(w)][c-'A'] {
		if k == kwNone || equalFold(w, kwNames[k]) {
			return k
		}
	}
	return kwNone
}

// equalFold reports whether w, in any case, spells the upper-case
// keyword name of the same length.
func equalFold(w []byte, name string) bool {
	for i := 1; i < len(w); i++ {
		if upper[w[i]] != name[i] {
			return false
		}
	}
	return true
}

// upper maps a byte to its ASCII upper case; other bytes map to themselves.
var upper = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if 'a' <= i && i <= 'z' {
			t[i] = byte(i) - ('a' - 'A')
		}
	}
	return t
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
