# Fails when a Catch test name would not survive CTest's discovery (catch_discover_tests):
#  - a ';' splits the name into two CTest entries, each matching no test case, and both "pass"
#    having run nothing;
#  - a name starting with '-' is read by the test binary as an option, not a test spec;
#  - a ": " past column 74 of a test case's or a section's name aborts the test binary when it
#    reports a failure in that test: Catch2 v2's console reporter indents the wrapped name to just
#    after the first ": ", and an indent wider than its 79-column text throws (or asserts), so the
#    failure is hidden behind "terminate called ... basic_string::substr".
# Run by CTest as test_names_test:
#   cmake -DBINARIES="a|b|..." -DSOURCES=<tests dir> -P check_test_names.cmake
string(REPLACE "|" ";" binaries "${BINARIES}")
set(bad "")
set(total 0)
# The console reporter indents a section's name by 2 more than a test case's.
set(max_colon_test 74)
set(max_colon_section 72)
function(colon_too_far name limit out)
  string(FIND "${name}" ": " at)
  if(at GREATER ${limit})
    set(${out} TRUE PARENT_SCOPE)
  else()
    set(${out} FALSE PARENT_SCOPE)
  endif()
endfunction()
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
    colon_too_far("${name}" ${max_colon_test} far)
    if(name MATCHES "<SEMICOLON>" OR name MATCHES "^-" OR far)
      string(REPLACE "<SEMICOLON>" ";" shown "${name}")
      get_filename_component(short "${binary}" NAME)
      string(APPEND bad "\n  ${short}: \"${shown}\"")
    endif()
  endforeach()
endforeach()
# Section names are not listed by the binaries: read them from the sources.
file(GLOB_RECURSE sources "${SOURCES}/*.cc")
foreach(source IN LISTS sources)
  file(STRINGS "${source}" lines REGEX "SECTION\\(\"")
  foreach(line IN LISTS lines)
    if(line MATCHES "SECTION\\(\"([^\"]*)\"")
      colon_too_far("${CMAKE_MATCH_1}" ${max_colon_section} far)
      if(far)
        file(RELATIVE_PATH short "${SOURCES}" "${source}")
        string(APPEND bad "\n  ${short}: section \"${CMAKE_MATCH_1}\"")
      endif()
    endif()
  endforeach()
endforeach()
if(total EQUAL 0)
  message(FATAL_ERROR "no test names listed by: ${BINARIES}")
endif()
if(NOT bad STREQUAL "")
  message(FATAL_ERROR "test names CTest or Catch cannot report (no ';', no leading '-', no ': ' past column "
                      "${max_colon_test}; rename them):${bad}")
endif()
message(STATUS "${total} test names checked")
