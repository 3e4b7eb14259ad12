#include <cblas.h>

// OpenBLAS extensions that report and steer its threading and the kernel set it picked at load time.
int openblas_get_num_threads(void);
void openblas_set_num_threads(int num_threads);
char *openblas_get_corename(void);
char *openblas_get_config(void);
