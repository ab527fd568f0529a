//! The ECS executor: each build is an ECS task running `cloudrunr build` (the same entrypoint
//! the local process executor runs), with the deployment's parameters as container overrides.

use super::RemoteBuilds;
use async_trait::async_trait;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, KeyValuePair, LaunchType, NetworkConfiguration,
    TaskOverride,
};
use platform::DeploymentId;
use platform::executor::{BuildJob, BuildLifetime, Execution, ExecutionStatus, Executor, ExecutorError};
use platform::settings::EcsSettings;

pub struct EcsExecutor {
    client: aws_sdk_ecs::Client,
    settings: EcsSettings,
    builds: RemoteBuilds,
}

impl EcsExecutor {
    pub fn new(client: aws_sdk_ecs::Client, settings: EcsSettings, builds: RemoteBuilds) -> Self {
        Self {
            client,
            settings,
            builds,
        }
    }
}

fn backend<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> ExecutorError + '_ {
    move |e| ExecutorError::Backend(format!("{what}: {e}"))
}

#[async_trait]
impl Executor for EcsExecutor {
    async fn start(&self, job: BuildJob) -> Result<Option<Execution>, ExecutorError> {
        let env = self
            .builds
            .env_for(&job.deployment_id)
            .into_iter()
            .map(|(name, value)| KeyValuePair::builder().name(name).value(value).build())
            .collect();
        let overrides = TaskOverride::builder()
            .container_overrides(
                ContainerOverride::builder()
                    .name(&self.settings.container)
                    .command("build")
                    .set_environment(Some(env))
                    .build(),
            )
            .build();
        // awsvpc networking (Fargate) needs subnets; bridge/host task definitions take none.
        let network = if self.settings.subnets.is_empty() {
            None
        } else {
            let vpc = AwsVpcConfiguration::builder()
                .set_subnets(Some(self.settings.subnets.clone()))
                .set_security_groups(
                    (!self.settings.security_groups.is_empty()).then(|| self.settings.security_groups.clone()),
                )
                .assign_public_ip(if self.settings.assign_public_ip {
                    AssignPublicIp::Enabled
                } else {
                    AssignPublicIp::Disabled
                })
                .build()
                .map_err(backend("network configuration"))?;
            Some(NetworkConfiguration::builder().awsvpc_configuration(vpc).build())
        };
        let out = self
            .client
            .run_task()
            .cluster(&self.settings.cluster)
            .task_definition(&self.settings.task_definition)
            .launch_type(LaunchType::from(self.settings.launch_type.as_str()))
            .set_network_configuration(network)
            .overrides(overrides)
            .started_by(format!("cloudrunr-{}", job.deployment_id.short()))
            .count(1)
            .send()
            .await
            .map_err(|e| {
                ExecutorError::Start(format!("ECS RunTask: {}", aws_sdk_ecs::error::DisplayErrorContext(e)))
            })?;
        if let Some(f) = out.failures().first() {
            return Err(ExecutorError::Start(format!(
                "ECS could not start the task: {} {}",
                f.reason().unwrap_or_default(),
                f.detail().unwrap_or_default()
            )));
        }
        let arn = out
            .tasks()
            .first()
            .and_then(|t| t.task_arn())
            .ok_or_else(|| ExecutorError::Start("ECS started no task".into()))?;
        Ok(Some(Execution(arn.to_owned())))
    }

    async fn cancel(&self, _: &DeploymentId, execution: Option<&Execution>) -> Result<(), ExecutorError> {
        let Some(Execution(arn)) = execution else { return Ok(()) };
        self.client
            .stop_task()
            .cluster(&self.settings.cluster)
            .task(arn)
            .reason("canceled in CloudRunr")
            .send()
            .await
            .map_err(|e| {
                ExecutorError::Backend(format!("ECS StopTask: {}", aws_sdk_ecs::error::DisplayErrorContext(e)))
            })?;
        Ok(())
    }

    async fn status(&self, execution: &Execution) -> Result<ExecutionStatus, ExecutorError> {
        let out = self
            .client
            .describe_tasks()
            .cluster(&self.settings.cluster)
            .tasks(&execution.0)
            .send()
            .await
            .map_err(|e| {
                ExecutorError::Backend(format!(
                    "ECS DescribeTasks: {}",
                    aws_sdk_ecs::error::DisplayErrorContext(e)
                ))
            })?;
        let Some(task) = out.tasks().first() else {
            return Ok(ExecutionStatus::Stopped {
                reason: "ECS no longer knows the task".into(),
            });
        };
        if task.last_status() != Some("STOPPED") {
            return Ok(ExecutionStatus::Running);
        }
        let container = task.containers().iter().find_map(|c| c.reason().map(str::to_owned));
        let reason = match (task.stopped_reason(), container) {
            (Some(r), Some(c)) => format!("{r} ({c})"),
            (Some(r), None) => r.to_owned(),
            (None, Some(c)) => c,
            (None, None) => "the task stopped".into(),
        };
        Ok(ExecutionStatus::Stopped { reason })
    }

    fn lifetime(&self) -> BuildLifetime {
        BuildLifetime::Independent
    }
}
