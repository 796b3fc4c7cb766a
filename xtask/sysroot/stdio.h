/* Minimal <stdio.h> for bindings generation: FILE stays opaque (see stddef.h). */
#ifndef XTASK_STDIO_H
#define XTASK_STDIO_H
#include <stddef.h>
typedef struct _IO_FILE FILE;
#endif
