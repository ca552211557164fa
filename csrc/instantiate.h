/* Instantiates a self-templating kernel file: includes PYOPT_TEMPLATE_FILE once with T = float (SUFFIX: _f32) and
 * once with T = double (_f64), with PYOPT_TEMPLATE defined so that the file compiles its per-dtype part.
 * Use at the end of the file's non-template part:
 *     #define PYOPT_TEMPLATE_FILE "adam.c"
 *     #include "instantiate.h"
 */
#define PYOPT_TEMPLATE
#define T float
#define SUFFIX(name) name##_f32
#include PYOPT_TEMPLATE_FILE
#undef T
#undef SUFFIX
#define T double
#define SUFFIX(name) name##_f64
#include PYOPT_TEMPLATE_FILE
#undef T
#undef SUFFIX
#undef PYOPT_TEMPLATE
#undef PYOPT_TEMPLATE_FILE
