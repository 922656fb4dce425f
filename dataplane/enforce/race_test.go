//go:build race

package enforce

const raceEnabled = true
