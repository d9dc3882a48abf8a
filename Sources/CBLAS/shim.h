// Debian's libopenblas-dev puts cblas.h under the multiarch include path.
#include <cblas.h>
