# Tests: cmocka unit tests (tests/unit/test_<module>.c), broken plugins for
# the loader (tests/plugins/), and integration tests that drive the real
# binary (tests/integration/).

if(NOT CMOCKA_FOUND)
    message(FATAL_ERROR "cmocka not found: run `make deps`")
endif()

file(GLOB UNIT_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
foreach(src ${UNIT_SOURCES})
    get_filename_component(n ${src} NAME_WE)
    add_executable(${n} ${src})
    target_link_libraries(${n} PRIVATE vigil_core PkgConfig::CMOCKA)
    if(n STREQUAL "test_store")
        # It prepares its PostgreSQL database with libpq itself.
        target_link_libraries(${n} PRIVATE PkgConfig::PQ)
    endif()
    add_test(NAME unit_${n} COMMAND ${n})
    set_tests_properties(unit_${n} PROPERTIES LABELS unit TIMEOUT 120
        ENVIRONMENT "VIGIL_TEST_PLUGINS=${CMAKE_BINARY_DIR}/test-plugins;VIGIL_PLUGIN_DIR=${VIGIL_PLUGIN_OUT};VIGIL_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endforeach()

# Deliberately broken plugins (wrong ABI, no symbol, failing init...), one
# file each: tests/plugins/<name>.c -> test-plugins/<name>.so
file(GLOB TEST_PLUGIN_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/plugins/*.c)
# The SDK example doubles as a plugin whose value a test controls (the size
# of a file).
list(APPEND TEST_PLUGIN_SOURCES ${CMAKE_SOURCE_DIR}/docs/examples/hello.c)
foreach(src ${TEST_PLUGIN_SOURCES})
    get_filename_component(n ${src} NAME_WE)
    add_library(tp_${n} MODULE ${src})
    target_include_directories(tp_${n} PRIVATE ${CMAKE_SOURCE_DIR}/include)
    set_target_properties(tp_${n} PROPERTIES PREFIX "" OUTPUT_NAME ${n}
        LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/test-plugins)
    if(TARGET test_plugin_loader)
        add_dependencies(test_plugin_loader tp_${n})
    endif()
endforeach()

# Integration tests: executable scripts tests/integration/*.sh or *.py get
# the binary, the plugin dir and the source dir as environment.
file(GLOB INTEG_SOURCES CONFIGURE_DEPENDS
     ${CMAKE_SOURCE_DIR}/tests/integration/*.sh
     ${CMAKE_SOURCE_DIR}/tests/integration/*.py)
foreach(src ${INTEG_SOURCES})
    get_filename_component(n ${src} NAME_WE)
    add_test(NAME integ_${n} COMMAND ${src})
    set(labels integration)
    if(n MATCHES "^(pg|sim|drill)")
        list(APPEND labels pg) # they start PostgreSQL: ctest -LE pg skips
    endif()
    if(n MATCHES "^(sim|drill)")
        # They measure CPU and latency of a whole service: alone, or other
        # tests' load is what they see.
        set_tests_properties(integ_${n} PROPERTIES RUN_SERIAL TRUE)
    endif()
    if(n MATCHES "^drill")
        list(APPEND labels drill) # minutes each: the normal build only
    endif()
    set_tests_properties(integ_${n} PROPERTIES LABELS "${labels}"
        TIMEOUT 300 SKIP_RETURN_CODE 77
        ENVIRONMENT "VIGIL_BIN=$<TARGET_FILE:vigil>;VIGIL_PLUGIN_DIR=${VIGIL_PLUGIN_OUT};VIGIL_SOURCE_DIR=${CMAKE_SOURCE_DIR};VIGIL_TEST_PLUGINS=${CMAKE_BINARY_DIR}/test-plugins")
endforeach()

# The runbooks vigil ships all come with tests.
add_test(NAME rules_shipped COMMAND vigil test ${CMAKE_SOURCE_DIR}/rules)
set_tests_properties(rules_shipped PROPERTIES LABELS rules TIMEOUT 120)
add_test(NAME rules_features COMMAND vigil test ${CMAKE_SOURCE_DIR}/tests/rules)
set_tests_properties(rules_features PROPERTIES LABELS rules TIMEOUT 120)

# libFuzzer targets (VIGIL_FUZZ=ON, clang): tests/fuzz/fuzz_<name>.c, with
# a seed corpus in tests/fuzz/corpus/<name>/. vigil_fuzzer(name src...)
# adds sources a target needs beyond vigil_core (a plugin's parser).
add_custom_target(fuzzers)
function(vigil_fuzzer name)
    if(NOT VIGIL_FUZZ)
        return()
    endif()
    add_executable(fuzz_${name} ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_${name}.c
                   ${ARGN})
    target_link_libraries(fuzz_${name} PRIVATE vigil_core)
    target_include_directories(fuzz_${name} PRIVATE ${CMAKE_SOURCE_DIR}/include)
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
    add_dependencies(fuzzers fuzz_${name})
    add_test(NAME fuzz_${name}
             COMMAND ${CMAKE_SOURCE_DIR}/tests/fuzz/run.sh
                     $<TARGET_FILE:fuzz_${name}>
                     ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${name}
                     $ENV{VIGIL_FUZZ_SECONDS})
    set_tests_properties(fuzz_${name} PROPERTIES LABELS fuzz TIMEOUT 600)
endfunction()

vigil_fuzzer(config)
vigil_fuzzer(selector)

# The store's suite again on PostgreSQL (test_store with VIGIL_TEST_PG), on a
# throwaway server that the "pg" fixture starts in the build tree on a free
# port and stops afterwards (tests/pg/start.sh, stop.sh). Needs the
# PostgreSQL 15 server binaries (make deps); start.sh fails loudly without
# them. `ctest -LE pg` leaves it out.
set(VIGIL_PG_STATE ${CMAKE_BINARY_DIR}/pg-test)
add_test(NAME pg_start
         COMMAND ${CMAKE_SOURCE_DIR}/tests/pg/start.sh ${VIGIL_PG_STATE})
set_tests_properties(pg_start PROPERTIES FIXTURES_SETUP pg LABELS "unit;pg"
    TIMEOUT 120 ENVIRONMENT "VIGIL_PG_OPTS=-c fsync=off")
add_test(NAME pg_stop
         COMMAND ${CMAKE_SOURCE_DIR}/tests/pg/stop.sh ${VIGIL_PG_STATE})
set_tests_properties(pg_stop PROPERTIES FIXTURES_CLEANUP pg LABELS "unit;pg"
    TIMEOUT 60)
add_test(NAME unit_test_store_pg
         COMMAND ${CMAKE_SOURCE_DIR}/tests/pg/run.sh ${VIGIL_PG_STATE}
                 $<TARGET_FILE:test_store>)
set_tests_properties(unit_test_store_pg PROPERTIES FIXTURES_REQUIRED pg
    LABELS "unit;pg" TIMEOUT 300)
# The daemon itself on that server: it loads libpq only for such a store.
add_test(NAME integ_store_pg_daemon
         COMMAND ${CMAKE_SOURCE_DIR}/tests/pg/run.sh ${VIGIL_PG_STATE}
                 ${CMAKE_SOURCE_DIR}/tests/pg/daemon_store.py)
set_tests_properties(integ_store_pg_daemon PROPERTIES FIXTURES_REQUIRED pg
    LABELS "integration;pg" TIMEOUT 120
    ENVIRONMENT "VIGIL_BIN=$<TARGET_FILE:vigil>;VIGIL_PLUGIN_DIR=${VIGIL_PLUGIN_OUT};VIGIL_SOURCE_DIR=${CMAKE_SOURCE_DIR};VIGIL_TEST_PLUGINS=${CMAKE_BINARY_DIR}/test-plugins")
