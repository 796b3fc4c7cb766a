/* Minimal <stdlib.h> for bindings generation (see stddef.h). */
#include <stddef.h>
