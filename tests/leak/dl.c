/* dl.c: a library dlopen'd by cases.c; its data is the only root of a block. */
void *leak_lib_ptr;
void leak_lib_set(void *p) { leak_lib_ptr = p; }
