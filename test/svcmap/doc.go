// Package svcmap holds the end-to-end test of the segment map: flows fed to
// a real flow Recorder, drawn by GET /v1/map, fetched by `bulkhead map`, and
// the HTML page rendered by headless Chromium (Debian's chromium package).
package svcmap
