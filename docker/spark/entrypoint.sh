#!/usr/bin/env bash
# Spark's Kubernetes entrypoint for the kfp-edge Spark image, after Apache Spark's
# resource-managers/kubernetes/docker/src/main/dockerfiles/spark/entrypoint.sh (Apache-2.0).
#
# The Spark Operator's driver pod runs `<entrypoint> driver <spark-submit args>`, and the
# executor pods the driver creates run `<entrypoint> executor`, configured through SPARK_*
# environment variables. Anything else is executed as given (the kfp steps set their own
# command, which replaces this entrypoint).
set -euo pipefail

: "${SPARK_HOME:?SPARK_HOME must point at the pyspark installation}"
SPARK_CLASSPATH="${SPARK_CLASSPATH:-}:${SPARK_HOME}/jars/*"
if [ -z "${JAVA_HOME:-}" ]; then
  JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
fi
# Executors get their JVM options as SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ... in that order.
readarray -t SPARK_EXECUTOR_JAVA_OPTS < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | sed 's/[^=]*=\(.*\)/\1/g')
if [ -n "${PYSPARK_PYTHON:-}" ]; then export PYSPARK_PYTHON; fi
if [ -n "${PYSPARK_DRIVER_PYTHON:-}" ]; then export PYSPARK_DRIVER_PYTHON; fi

case "${1:-}" in
  driver)
    shift 1
    # In the driver pod spark-submit runs in client mode: the pod is the driver.
    CMD=(
      "${SPARK_HOME}/bin/spark-submit"
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:-0.0.0.0}"
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS:-0.0.0.0}"
      --deploy-mode client
      "$@"
    )
    ;;
  executor)
    shift 1
    CMD=(
      "${JAVA_HOME}/bin/java"
      "${SPARK_EXECUTOR_JAVA_OPTS[@]}"
      "-Xms${SPARK_EXECUTOR_MEMORY}"
      "-Xmx${SPARK_EXECUTOR_MEMORY}"
      -cp "${SPARK_CLASSPATH}:${SPARK_DIST_CLASSPATH:-}"
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend
      --driver-url "${SPARK_DRIVER_URL}"
      --executor-id "${SPARK_EXECUTOR_ID}"
      --cores "${SPARK_EXECUTOR_CORES}"
      --app-id "${SPARK_APPLICATION_ID}"
      --hostname "${SPARK_EXECUTOR_POD_IP}"
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}"
      --podName "${SPARK_EXECUTOR_POD_NAME:-}"
    )
    ;;
  *)
    CMD=("$@")
    ;;
esac

# tini reaps the JVM's children and forwards signals (the operator deletes pods with SIGTERM).
exec tini -s -- "${CMD[@]}"
