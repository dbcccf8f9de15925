# Fails when a Catch test name would not survive CTest's discovery (catch_discover_tests):
#  - a ';' splits the name into two CTest entries, each matching no test case, and both "pass"
#    having run nothing;
#  - a name starting with '-' is read by the test binary as an option, not a test spec.
# Run by CTest as test_names_test: cmake -DBINARIES="a|b|..." -P check_test_names.cmake
string(REPLACE "|" ";" binaries "${BINARIES}")
set(bad "")
set(total 0)
foreach(binary IN LISTS binaries)
  execute_process(COMMAND "${binary}" --list-test-names-only
                  OUTPUT_VARIABLE listing RESULT_VARIABLE code)
  if(NOT code MATCHES "^[0-9]+$")  # Catch exits with the number of tests listed
    message(FATAL_ERROR "${binary} --list-test-names-only failed: ${code}")
  endif()
  # Count and check line by line without letting CMake's list syntax see the ';'s: escape them.
  string(REPLACE ";" "<SEMICOLON>" listing "${listing}")
  string(REPLACE "\n" ";" names "${listing}")
  foreach(name IN LISTS names)
    if(name STREQUAL "")
      continue()
    endif()
    math(EXPR total "${total} + 1")
    if(name MATCHES "<SEMICOLON>" OR name MATCHES "^-")
      string(REPLACE "<SEMICOLON>" ";" shown "${name}")
      get_filename_component(short "${binary}" NAME)
      string(APPEND bad "\n  ${short}: \"${shown}\"")
    endif()
  endforeach()
endforeach()
if(total EQUAL 0)
  message(FATAL_ERROR "no test names listed by: ${BINARIES}")
endif()
if(NOT bad STREQUAL "")
  message(FATAL_ERROR "test names CTest cannot run (no ';', no leading '-'; rename them):${bad}")
endif()
message(STATUS "${total} test names checked")
