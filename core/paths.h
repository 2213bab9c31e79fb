/*
 * paths - where vigil finds what it ships, relative to its own binary, so
 * that the same build runs from the source tree and once installed:
 *
 *   build tree   <src>/build/vigil        plugins in build/plugins,
 *                                         rules and scripts in <src>/
 *   installed    <prefix>/bin/vigil       <prefix>/lib/vigil/plugins,
 *                                         <prefix>/share/vigil/{rules,...}
 */
#ifndef VIGIL_PATHS_H
#define VIGIL_PATHS_H

/* Directory of the running executable ("." if unknown). Static buffer. */
const char *paths_exe_dir(void);

/* A shipped data directory: <exe>/../<sub> when it exists (build tree),
 * else <exe>/../share/vigil/<sub>. Writes into buf and returns it. */
const char *paths_data_dir(const char *sub, char *buf, unsigned size);

#endif
