/* Minimal <stdbool.h> for bindings generation (see stddef.h). */
#ifndef XTASK_STDBOOL_H
#define XTASK_STDBOOL_H
#define bool _Bool
#define true 1
#define false 0
#endif
