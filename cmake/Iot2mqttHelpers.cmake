# Shared build helpers. Warnings come from one place; generated code is exempt.

function(iot2mqtt_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic
                         -Wno-unused-parameter)
  if(IOT2MQTT_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# iot2mqtt_test(NAME <name> LABEL <unit|integration|e2e> SOURCES ... DEPS ...)
# One Catch2 executable, its cases registered with CTest one by one.
function(iot2mqtt_test)
  cmake_parse_arguments(T "" "NAME;LABEL;TIMEOUT" "SOURCES;DEPS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE iot2mqtt_catch_main ${T_DEPS})
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
  iot2mqtt_warnings(${T_NAME})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  catch_discover_tests(${T_NAME}
    TEST_PREFIX "${T_NAME}: "
    PROPERTIES LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "IOT2MQTT_BINARY_DIR=${PROJECT_BINARY_DIR};IOT2MQTT_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endfunction()
