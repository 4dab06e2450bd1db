//go:build !linux

package main

import "syscall"

// childAttr is nothing special off Linux, where heraldbench cannot measure CPU anyway.
func childAttr() *syscall.SysProcAttr { return nil }
