//go:build race

package main

// raceBuild makes the server binary under test a race-detector build whenever the tests are one.
const raceBuild = true
