# The dashboard: web/*.html, *.js, *.css and uPlot (from the npm registry,
# pinned by web/package-lock.json) are copied into <build>/web, where the
# daemon finds them next to its binary (core/http.c), and installed into
# <prefix>/share/vigil/web. The served files need no network.
#
# `npm ci` runs in web/ (and, for the dashboard test, in tests/web/, which
# pins playwright-core: it drives Debian's chromium and downloads no
# browser) when the lock files change. npm comes with Node.js (Debian:
# nodejs + npm); see docs/dependencies.md.

find_program(VIGIL_NPM npm)
if(NOT VIGIL_NPM)
    message(FATAL_ERROR "npm not found: the dashboard needs uPlot from the "
                        "npm registry (Debian: apt-get install nodejs npm)")
endif()

set(VIGIL_WEB_SRC ${CMAKE_SOURCE_DIR}/web)
set(VIGIL_WEB_OUT ${CMAKE_BINARY_DIR}/web)
set(VIGIL_NPM_FLAGS --no-audit --no-fund --prefer-offline --loglevel=error)

add_custom_command(
    OUTPUT ${VIGIL_WEB_SRC}/node_modules/.package-lock.json
    COMMAND ${VIGIL_NPM} ci ${VIGIL_NPM_FLAGS}
    WORKING_DIRECTORY ${VIGIL_WEB_SRC}
    DEPENDS ${VIGIL_WEB_SRC}/package.json ${VIGIL_WEB_SRC}/package-lock.json
    COMMENT "npm ci in web/ (uPlot)")

file(GLOB VIGIL_WEB_FILES CONFIGURE_DEPENDS ${VIGIL_WEB_SRC}/*.html
     ${VIGIL_WEB_SRC}/*.js ${VIGIL_WEB_SRC}/*.css ${VIGIL_WEB_SRC}/*.svg)
set(VIGIL_UPLOT ${VIGIL_WEB_SRC}/node_modules/uplot/dist)
add_custom_command(
    OUTPUT ${VIGIL_WEB_OUT}/.stamp
    COMMAND ${CMAKE_COMMAND} -E make_directory ${VIGIL_WEB_OUT}/vendor
    COMMAND ${CMAKE_COMMAND} -E copy_if_different ${VIGIL_WEB_FILES}
            ${VIGIL_WEB_OUT}/
    COMMAND ${CMAKE_COMMAND} -E copy_if_different
            ${VIGIL_UPLOT}/uPlot.iife.min.js ${VIGIL_UPLOT}/uPlot.min.css
            ${VIGIL_WEB_SRC}/node_modules/uplot/LICENSE
            ${VIGIL_WEB_OUT}/vendor/
    COMMAND ${CMAKE_COMMAND} -E touch ${VIGIL_WEB_OUT}/.stamp
    DEPENDS ${VIGIL_WEB_FILES}
            ${VIGIL_WEB_SRC}/node_modules/.package-lock.json
    COMMENT "dashboard files into ${VIGIL_WEB_OUT}")
add_custom_target(vigil_web ALL DEPENDS ${VIGIL_WEB_OUT}/.stamp)
install(DIRECTORY ${VIGIL_WEB_OUT}/ DESTINATION ${CMAKE_INSTALL_DATADIR}/vigil/web
        PATTERN .stamp EXCLUDE)

# playwright-core for tests/integration/api_dashboard.py.
set(VIGIL_WEB_TESTS ${CMAKE_SOURCE_DIR}/tests/web)
add_custom_command(
    OUTPUT ${VIGIL_WEB_TESTS}/node_modules/.package-lock.json
    COMMAND ${VIGIL_NPM} ci ${VIGIL_NPM_FLAGS}
    WORKING_DIRECTORY ${VIGIL_WEB_TESTS}
    DEPENDS ${VIGIL_WEB_TESTS}/package.json ${VIGIL_WEB_TESTS}/package-lock.json
    COMMENT "npm ci in tests/web/ (playwright-core)")
add_custom_target(vigil_web_tests ALL
                  DEPENDS ${VIGIL_WEB_TESTS}/node_modules/.package-lock.json)
