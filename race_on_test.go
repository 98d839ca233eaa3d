//go:build race

package main

// raceEnabled builds the binary under test with the race detector too, so
// the end-to-end tests check the running server for races.
const raceEnabled = true
