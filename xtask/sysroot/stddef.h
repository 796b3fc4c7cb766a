/* Minimal C headers for bindings generation: they pin every libc type that the mlx-c
 * headers use to its LP64 definition, so the output is the same on every machine. */
#ifndef XTASK_STDDEF_H
#define XTASK_STDDEF_H
typedef unsigned long size_t;
typedef long ptrdiff_t;
#define NULL ((void*)0)
#endif
