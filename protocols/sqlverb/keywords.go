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

// keyword returns the keyword w spells in any case, or kwNone.
func keyword(w []byte) kw {
	if len(w) < 2 || len(w) > maxKeyword {
		return kwNone
	}
	var buf [maxKeyword]byte
	for i, c := range w {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		buf[i] = c
	}
	u := buf[:len(w)]
	lo, hi := 1, int(kwCount)-1
	for lo <= hi {
		m := int(uint(lo+hi) >> 1)
		switch c := compare(u, kwNames[m]); {
		case c == 0:
			return kw(m)
		case c < 0:
			hi = m - 1
		default:
			lo = m + 1
		}
	}
	return kwNone
}

func compare(a []byte, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

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
